"""Use cases behind the routes: keyword-only functions over the ports."""
