"""Bulk contacts and manual associations through the running system (PRODUCT §9, issue 5):

- ``POST /v1/contacts/batch/upsert`` through the one base URL: a result per row, refused rows
  alone, scopes, ``Idempotency-Key``, other accounts untouched;
- ``commerce crm import contacts`` against the running stack's database: summary, exit
  status, refused lines, a second run that changes nothing;
- imported contacts reach checkout (one ``crm_records.updated`` per batch): a payment link
  can be made from one, and a payment can be associated with one by hand;
- a merchant's manual associations among contacts, companies and deals (``PATCH``)
  replace the earlier ones on both sides.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest

from tests.support.client import Buyer
from tests.support.problems import CheckedApi, assert_problem
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
WAIT = 60


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def shop(stack, session):
    created = stack.create_account(f"Import shop {uuid.uuid4().hex[:6]}", "USD", True)
    api = CheckedApi(session, stack.config.base_url, created["api_key"])
    api.account_id = created["account_id"]
    return api


def run() -> str:
    return uuid.uuid4().hex[:8]


async def contact_by_email(api: CheckedApi, email: str) -> dict | None:
    r = await api.get(f"/v1/contacts?email={email}")
    assert r.status == 200, r.body
    return r.body["data"][0] if r.body["data"] else None


async def associations(api: CheckedApi, kind: str, record_id: str) -> dict:
    r = await api.get(f"/v1/{kind}/{record_id}/associations")
    assert r.status == 200, r.body
    return r.body


async def test_the_batch_api_answers_per_row(shop, stack, session):
    tag = run()
    body = {
        "contacts": [
            {"email": f"ada-{tag}@example.com", "firstname": "Ada", "lastname": "Lovelace", "company": "Engines"},
            {"email": f"not an address {tag}"},
            {"email": f"ADA-{tag}@EXAMPLE.com", "city": "London", "firstname": ""},
            {"email": f"grace-{tag}@example.com", "firstname": "Grace", "zip": "1" * 51},
            {"email": f"grace-{tag}@example.com", "firstname": "Grace"},
        ]
    }
    r = await shop.post("/v1/contacts/batch/upsert", body, headers={"Idempotency-Key": f"batch-{tag}"})
    assert r.status == 200, r.body
    assert [(x["index"], x["status"]) for x in r.body["results"]] == [
        (0, "created"),
        (1, "failed"),
        (2, "merged"),
        (3, "failed"),
        (4, "created"),
    ]
    assert r.body["results"][3]["errors"] == [{"field": "zip", "message": "is longer than 50 characters"}]
    ada = await contact_by_email(shop, f"ada-{tag}@example.com")
    assert ada["id"] == r.body["results"][0]["id"] == r.body["results"][2]["id"]
    assert (ada["firstname"], ada["lastname"], ada["company"], ada["city"]) == ("Ada", "Lovelace", "Engines", "London")

    replay = await shop.post("/v1/contacts/batch/upsert", body, headers={"Idempotency-Key": f"batch-{tag}"})
    assert replay.status == 200 and replay.body == r.body and replay.headers.get("Idempotent-Replayed") == "true"
    again = await shop.post("/v1/contacts/batch/upsert", body)  # without the key: the rows are applied again
    assert [x["status"] for x in again.body["results"]] == ["unchanged", "failed", "merged", "failed", "unchanged"]
    assert [x["id"] for x in again.body["results"]] == [x["id"] for x in r.body["results"]]

    # another account with the same addresses has contacts of its own, and changes nothing here
    other = stack.create_account(f"Other import shop {tag}", "USD", True)
    theirs = CheckedApi(session, stack.config.base_url, other["api_key"])
    mine = await theirs.post(
        "/v1/contacts/batch/upsert", {"contacts": [{"email": f"ada-{tag}@example.com", "city": "Paris"}]}
    )
    assert mine.status == 200 and mine.body["results"][0]["status"] == "created"
    assert mine.body["results"][0]["id"] != ada["id"]
    assert (await contact_by_email(shop, f"ada-{tag}@example.com"))["city"] == "London"


async def test_the_batch_api_needs_crm_write_and_a_well_formed_body(shop, stack, session):
    keys = {}
    for scope in ("crm:read", "payments:read", "crm:write"):
        made = await shop.post("/v1/api_keys", {"scopes": [scope]})
        assert made.status == 201, made.body
        keys[scope] = CheckedApi(session, stack.config.base_url, made.body["key"])
    body = {"contacts": [{"email": f"scoped-{run()}@example.com"}]}
    assert_problem(await keys["crm:read"].post("/v1/contacts/batch/upsert", body), 403)
    assert_problem(await keys["payments:read"].post("/v1/contacts/batch/upsert", body), 403)
    assert_problem(await CheckedApi(session, stack.config.base_url).post("/v1/contacts/batch/upsert", body), 401)
    assert (await keys["crm:write"].post("/v1/contacts/batch/upsert", body)).status == 200
    too_many = {"contacts": [{"email": f"n{i}@example.com"} for i in range(1001)]}
    assert_problem(await shop.post("/v1/contacts/batch/upsert", too_many), 422, "contacts")
    assert_problem(await shop.post("/v1/contacts/batch/upsert", {"contacts": [{"mail": "x@example.com"}]}), 422)
    assert (await shop.get("/v1/contacts?email=n0@example.com")).body["data"] == []


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def import_file(stack, account_id: str, path: Path, *extra: str) -> subprocess.CompletedProcess:
    command = ["crm", "import", "contacts", str(path), "--account", account_id, *extra]
    return subprocess.run(
        [sys.executable, "-m", "commerce_cli.main", *command],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_the_cli_imports_into_the_running_system(shop, stack, tmp_path):
    tag = run()
    path = write(
        tmp_path / "contacts.csv",
        [
            "E-mail,First name,Last name,Company name,Postal code,Notes",
            f"lin-{tag}@example.com,Lin,Chen,Chen & Co,11122,vip",
            f"broken-{tag}",
            f"LIN-{tag}@example.com,,,,,",
            f"mo-{tag}@example.com,Mo,,,,",
        ],
    )
    first = import_file(stack, shop.account_id, path, "--json", "--errors", str(tmp_path / "refused.csv"))
    assert first.returncode == 1, first.stdout + first.stderr  # one row refused, the others imported
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert (summary["rows"], summary["created"], summary["merged"], summary["refused"]) == (4, 2, 1, 1)
    assert summary["ignored_columns"] == ["Notes"]
    assert "line 3: refused — email: is not a valid e-mail address" in first.stderr
    assert (tmp_path / "refused.csv").read_text().splitlines()[1:] == ["3,email,is not a valid e-mail address"]
    lin = await contact_by_email(shop, f"lin-{tag}@example.com")
    assert (lin["firstname"], lin["lastname"], lin["company"], lin["zip"]) == ("Lin", "Chen", "Chen & Co", "11122")

    second = import_file(stack, shop.account_id, path, "--json")
    again = json.loads(second.stdout.strip().splitlines()[-1])
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 2)
    assert (await contact_by_email(shop, f"lin-{tag}@example.com")) == lin  # same version, same updated_at

    unknown = import_file(stack, "acct_doesnotexist", path)
    assert unknown.returncode == 2 and "knows no account" in unknown.stderr
    no_email = import_file(stack, shop.account_id, write(tmp_path / "x.csv", ["Name,City", "A,B"]))
    assert no_email.returncode == 2 and "no e-mail column" in no_email.stderr

    # checkout learns imported contacts (crm_records.updated): a link can be made from one
    async def link_from_contact():
        r = await shop.post(
            f"/v1/contacts/{lin['id']}/payment_links",
            {"name": "For Lin", "item_name": "Consulting", "unit_amount": 5000, "currency": "USD"},
        )
        return r.body if r.status == 201 else None

    link = await eventually(link_from_contact, timeout=WAIT)
    linked = await eventually(
        lambda: _nonempty(associations(shop, "contacts", lin["id"]), "payment_links"), timeout=WAIT
    )
    assert linked["payment_links"] == [link["id"]]


async def _nonempty(pending, group: str) -> dict | None:
    found = await pending
    return found if found[group] else None


async def test_manual_associations(shop, stack, session):
    """A merchant associates records by hand: a payment with an imported contact (checkout
    knows it from the batch event), a contact with a company, a deal with contacts and a
    company — each replacing the earlier choice on both sides."""
    tag = run()
    made = await shop.post(
        "/v1/contacts/batch/upsert",
        {"contacts": [{"email": f"{name}-{tag}@example.com", "firstname": name} for name in ("kim", "ola", "per")]},
    )
    kim, ola, per = (r["id"] for r in made.body["results"])
    acme = (await shop.post("/v1/companies", {"name": f"Acme {tag}"})).body["id"]
    beta = (await shop.post("/v1/companies", {"name": f"Beta {tag}"})).body["id"]

    # contact ↔ company
    assert (await shop.patch(f"/v1/contacts/{kim}", {"company_id": acme})).body["company_id"] == acme
    assert (await associations(shop, "companies", acme))["contacts"] == [kim]
    assert (await shop.patch(f"/v1/contacts/{kim}", {"company_id": beta})).body["company_id"] == beta
    assert (await associations(shop, "companies", acme))["contacts"] == []
    assert (await associations(shop, "companies", beta))["contacts"] == [kim]
    assert (await associations(shop, "contacts", kim))["companies"] == [beta]

    # deal ↔ contacts, deal ↔ company
    deal = (await shop.post("/v1/deals", {"name": f"Deal {tag}", "contact_ids": [kim, ola], "company_id": acme})).body
    assert sorted((await associations(shop, "deals", deal["id"]))["contacts"]) == sorted([kim, ola])
    changed = await shop.patch(f"/v1/deals/{deal['id']}", {"contact_ids": [per], "company_id": beta})
    assert changed.status == 200 and changed.body["contact_ids"] == [per] and changed.body["company_id"] == beta
    assert (await associations(shop, "contacts", kim))["deals"] == []
    assert (await associations(shop, "contacts", per))["deals"] == [deal["id"]]
    assert (await associations(shop, "companies", acme))["deals"] == []
    assert (await associations(shop, "companies", beta))["deals"] == [deal["id"]]

    # payment ↔ an imported contact, by hand
    link = await shop.post(
        "/v1/payment_links", {"currency": "USD", "line_items": [{"name": "Tea", "unit_amount": 900}]}
    )
    assert link.status == 201, link.body
    buyer = Buyer(session, stack.config.base_url, f"http://127.0.0.1:{stack.config.ports.test_processor}")
    paid = await buyer.pay(link.body["url"], f"payer-{tag}@example.com")
    assert paid.status == 200, paid.body
    payment_id = paid.body["payment_id"]

    async def associate():
        r = await shop.post(f"/v1/payments/{payment_id}/associations", {"contact_id": ola})
        return r.body if r.status == 200 else None

    payment = await eventually(associate, timeout=WAIT)
    assert payment["contact_id"] == ola and payment["associations"]["contact"] == "manual"

    async def moved():
        return payment_id in (await associations(shop, "contacts", ola))["payments"] or None

    assert await eventually(moved, timeout=WAIT)
