"""PostgreSQL schema migrations: `NNNN_words.sql` files, applied in order by `postgres_migrate`."""
