"""/v1/users over HTTP: the happy paths and every documented error."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi import FastAPI

from api.ids import new_id
from tests.api.conftest import drain, new_user

PROBLEM = "application/problem+json"


async def test_create_answers_201_with_location_and_etag(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/users", json={"email": "Ada@Example.COM", "name": "Ada"})
    assert response.status_code == 201
    user = response.json()
    assert user["email"] == "ada@example.com"
    assert user["version"] == 1
    assert response.headers["location"] == f"/v1/users/{user['id']}"
    assert response.headers["etag"] == '"v1"'
    fetched = await client.get(response.headers["location"])
    assert fetched.json()["id"] == user["id"]


async def test_creating_a_user_welcomes_them_in_the_background(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    user = await new_user(client)
    await drain(app)
    fetched = (await client.get(f"/v1/users/{user['id']}")).json()
    assert fetched["welcomed_at"] is not None
    assert fetched["version"] == 2


async def test_an_email_is_registered_once(client: httpx.AsyncClient) -> None:
    await new_user(client, "ada@example.com")
    response = await client.post("/v1/users", json={"email": "ADA@example.com", "name": "Other"})
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["field"] == "email"


async def test_an_email_that_lower_case_makes_too_long_is_422(client: httpx.AsyncClient) -> None:
    """ "İ" lowers to two code points: 200 of them make a 254-character email 454 long."""
    local = "İ" * 60
    email = f"{local}@{'d' * (254 - len(local) - 1 - 4)}.com"
    assert len(email) == 254
    assert len(email.lower()) > 254
    response = await client.post("/v1/users", json={"email": email, "name": "Ada"})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["body", "email"]
    assert "lower case" in response.json()["errors"][0]["msg"]
    # The same length that stays 254 in lower case is taken.
    fitting = f"{'i' * 60}@{'d' * (254 - 60 - 1 - 4)}.com"
    assert (await client.post("/v1/users", json={"email": fitting, "name": "A"})).status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email", "name": "Ada"},
        {"email": "ada@example.com"},
        {"email": "ada@example.com", "name": ""},
        {"email": "ada@example.com", "name": 42},
        {"email": ["ada@example.com"], "name": "Ada"},
        {"email": "ada@example.com", "name": "Ada", "admin": True},
        {"email": "ada@example.com", "name": "x" * 201},
        [],
        "ada",
        None,
    ],
)
async def test_invalid_bodies_are_422_and_create_nothing(
    client: httpx.AsyncClient, body: object
) -> None:
    raw = json.dumps(body).encode()
    response = await client.post(
        "/v1/users", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == 422
    assert problem["errors"]
    assert all("input" not in error for error in problem["errors"])
    assert (await client.get("/v1/users")).json()["items"] == []


@pytest.mark.parametrize(
    "raw", [b"{bad json", b'{"email": "a@b.co", "name": "x"', b"\xff\xfe\x00garbage", b""]
)
async def test_malformed_json_is_400_and_creates_nothing(
    client: httpx.AsyncClient, raw: bytes
) -> None:
    response = await client.post(
        "/v1/users", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code in {400, 422}
    if raw:
        assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    assert (await client.get("/v1/users")).json()["items"] == []


async def test_a_user_reads_with_an_etag_and_answers_304_when_unchanged(
    client: httpx.AsyncClient,
) -> None:
    user = await new_user(client)
    first = await client.get(f"/v1/users/{user['id']}")
    tag = first.headers["etag"]
    assert tag.startswith('"v')
    for header in (tag, f"W/{tag}", f'"other", {tag}', "*"):
        again = await client.get(f"/v1/users/{user['id']}", headers={"If-None-Match": header})
        assert again.status_code == 304, header
        assert again.headers["etag"] == tag
        assert again.content == b""
    stale = await client.get(f"/v1/users/{user['id']}", headers={"If-None-Match": '"v999"'})
    assert stale.status_code == 200


@pytest.mark.parametrize(
    "user_id",
    [
        "missing",
        "0",
        "..%2F..%2Fetc%2Fpasswd",
        "%00",
        "x" * 5000,
        "ünïcødé",
        "01890000-0000-7000-8000-000000000000",
        "' OR 1=1 --",
    ],
)
async def test_unknown_ids_of_any_shape_are_404_problems(
    client: httpx.AsyncClient, user_id: str
) -> None:
    for method in ("GET", "DELETE"):
        response = await client.request(method, f"/v1/users/{user_id}")
        assert response.status_code == 404, (method, response.text)
        assert response.headers["content-type"] == PROBLEM
    patch = await client.patch(f"/v1/users/{user_id}", json={"name": "x"})
    assert patch.status_code == 404


async def test_a_real_but_absent_id_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/v1/users/{new_id()}")
    assert response.status_code == 404


async def test_listing_pages_through_every_user_once(client: httpx.AsyncClient) -> None:
    ids = [(await new_user(client, f"u{i}@example.com"))["id"] for i in range(5)]
    seen: list[object] = []
    url: str | None = "/v1/users?limit=2"
    pages = 0
    while url:
        response = await client.get(url)
        assert response.status_code == 200
        page = response.json()
        seen += [u["id"] for u in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor:
            assert response.headers["link"].endswith('; rel="next"')
            url = response.headers["link"].split(">")[0].lstrip("<")
        else:
            assert "link" not in response.headers
            url = None
    assert seen == ids
    assert pages == 3


@pytest.mark.parametrize(
    "limit",
    ["0", "-1", "101", "1000000000000000000000", "abc", "1.5", "1_0", "+5", " 7", "\u0663"],
)
async def test_limit_out_of_bounds_is_422(client: httpx.AsyncClient, limit: str) -> None:
    response = await client.get("/v1/users", params={"limit": limit})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "limit"]


async def test_tampered_garbage_and_foreign_cursors_are_400(client: httpx.AsyncClient) -> None:
    for i in range(3):
        await new_user(client, f"u{i}@example.com")
    cursor = (await client.get("/v1/users?limit=1")).json()["next_cursor"]
    assert (await client.get("/v1/users", params={"cursor": cursor})).status_code == 200

    from api.cursors import encode_cursor
    from api.settings import DEV_CURSOR_SECRET

    body, _, sig = cursor.partition(".")
    flipped = body[:-1] + ("A" if body[-1] != "A" else "B") + "." + sig
    foreign_scope = encode_cursor("x", scope="jobs", secret=DEV_CURSOR_SECRET.encode())
    foreign_key = encode_cursor("x", scope="users", secret=b"another deployment")
    for bad in (flipped, "garbage", "!!!.???", "", ".", foreign_scope, foreign_key, cursor[:-3]):
        response = await client.get("/v1/users", params={"cursor": bad})
        assert response.status_code == 400, bad
        assert response.headers["content-type"] == PROBLEM


async def test_patch_with_if_match_bumps_the_version(client: httpx.AsyncClient) -> None:
    user = await new_user(client)
    url = f"/v1/users/{user['id']}"
    tag = (await client.get(url)).headers["etag"]
    response = await client.patch(url, json={"name": "Ada King"}, headers={"If-Match": tag})
    assert response.status_code == 200
    assert response.json()["name"] == "Ada King"
    assert response.headers["etag"] != tag
    # The cached copy was invalidated: a read shows the change.
    assert (await client.get(url)).json()["name"] == "Ada King"


async def test_patch_with_a_stale_if_match_is_412_and_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    user = await new_user(client)
    url = f"/v1/users/{user['id']}"
    tag = (await client.get(url)).headers["etag"]
    assert (await client.patch(url, json={"name": "First"}, headers={"If-Match": tag})).is_success
    for header in (tag, '"garbage"', "W/" + tag, f'"v999", {tag}'):
        response = await client.patch(url, json={"name": "Second"}, headers={"If-Match": header})
        assert response.status_code == 412, header
        assert response.headers["content-type"] == PROBLEM
    assert (await client.get(url)).json()["name"] == "First"


async def test_if_match_compares_strongly_and_honours_a_list(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    user = await new_user(client)
    await drain(app)  # the welcome has run: the version stays put
    url = f"/v1/users/{user['id']}"
    tag = (await client.get(url)).headers["etag"]
    zero_padded = tag.replace('"v', '"v0')
    for refused in ("W/" + tag, zero_padded):
        response = await client.patch(url, json={"name": "No"}, headers={"If-Match": refused})
        assert response.status_code == 412, refused
    listed = await client.patch(url, json={"name": "Yes"}, headers={"If-Match": f'"v999", {tag}'})
    assert listed.status_code == 200
    assert listed.json()["name"] == "Yes"


async def test_if_match_on_a_deleted_user_is_412_not_404(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """RFC 9110 13.1.1: with no current representation, If-Match is false, so 412."""
    user = await new_user(client)
    await drain(app)  # the welcome has run: the version stays put
    url = f"/v1/users/{user['id']}"
    tag = (await client.get(url)).headers["etag"]
    assert (await client.delete(url)).status_code == 204
    for header in (tag, "*"):
        response = await client.patch(url, json={"name": "Gone"}, headers={"If-Match": header})
        assert response.status_code == 412, header
        assert response.headers["content-type"] == PROBLEM
    assert (await client.patch(url, json={"name": "Gone"})).status_code == 404


async def test_head_is_served_wherever_get_is(app: FastAPI, client: httpx.AsyncClient) -> None:
    user = await new_user(client)
    await drain(app)  # the welcome has run: the version stays put
    for path in ("/healthz", "/readyz", "/v1/users", f"/v1/users/{user['id']}", "/openapi.json"):
        got, head = await client.get(path), await client.head(path)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b""
        for header in ("content-type", "content-length", "etag"):
            assert head.headers.get(header) == got.headers.get(header), (path, header)
    tag = (await client.get(f"/v1/users/{user['id']}")).headers["etag"]
    cached = await client.head(f"/v1/users/{user['id']}", headers={"If-None-Match": tag})
    assert cached.status_code == 304
    post_only = await client.head("/v1/jobs")
    assert (post_only.status_code, post_only.headers["allow"]) == (405, "POST")
    assert post_only.content == b""


async def test_concurrent_patches_with_one_if_match_let_one_through(
    client: httpx.AsyncClient,
) -> None:
    import asyncio

    user = await new_user(client)
    url = f"/v1/users/{user['id']}"
    tag = (await client.get(url)).headers["etag"]
    responses = await asyncio.gather(
        *(client.patch(url, json={"name": f"n{i}"}, headers={"If-Match": tag}) for i in range(2))
    )
    assert sorted(r.status_code for r in responses) == [200, 412]


@pytest.mark.parametrize(
    "body",
    [{}, {"name": None}, {"email": "nope"}, {"role": "admin"}, {"name": ["x"]}],
)
async def test_invalid_patches_are_422(client: httpx.AsyncClient, body: object) -> None:
    user = await new_user(client)
    response = await client.patch(f"/v1/users/{user['id']}", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


async def test_patch_to_a_taken_email_is_409(client: httpx.AsyncClient) -> None:
    await new_user(client, "ada@example.com")
    bob = await new_user(client, "bob@example.com")
    response = await client.patch(f"/v1/users/{bob['id']}", json={"email": "ada@example.com"})
    assert response.status_code == 409


async def test_delete_answers_204_then_404(client: httpx.AsyncClient) -> None:
    user = await new_user(client)
    url = f"/v1/users/{user['id']}"
    await client.get(url)  # fill the cache: a delete must not leave it serving the user
    assert (await client.delete(url)).status_code == 204
    assert (await client.get(url)).status_code == 404
    assert (await client.delete(url)).status_code == 404


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
async def test_a_body_that_is_not_json_is_415(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    body = b'{"email": "ada@example.com", "name": "Ada"}'
    for method, path in (("POST", "/v1/users"), ("POST", "/v1/jobs")):
        response = await client.request(method, path, content=body, headers=headers)
        assert response.status_code == 415, (method, path, content_type)
        assert response.headers["content-type"] == PROBLEM
    assert (await client.get("/v1/users")).json()["items"] == []


async def test_json_media_types_with_parameters_and_suffixes_are_accepted(
    client: httpx.AsyncClient,
) -> None:
    body = b'{"email": "ada@example.com", "name": "Ada"}'
    created = await client.post(
        "/v1/users", content=body, headers={"content-type": "application/json; charset=utf-8"}
    )
    assert created.status_code == 201
    patched = await client.patch(
        created.headers["location"],
        content=b'{"name": "Ada King"}',
        headers={"content-type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200


@pytest.mark.parametrize("name", ["nul\x00byte", "bell\x07", "tab\there", "\x7f"])
async def test_control_characters_are_refused(client: httpx.AsyncClient, name: str) -> None:
    response = await client.post("/v1/users", json={"email": "ada@example.com", "name": name})
    assert response.status_code == 422
    email = await client.post("/v1/users", json={"email": "a\x00@example.com", "name": "Ada"})
    assert email.status_code == 422
