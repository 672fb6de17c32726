"""The page's "Wrong? It was …" control in a real browser (`digitrec serve` + Debian's chromium):
draw, see the answer, correct it (mouse and keyboard), see the row in the database, undo it."""

from __future__ import annotations

import pytest
from conftest import digitrec_server
from test_e2e import FOUR, ONE, TWO, browser, draw, page, shown_digit  # noqa: F401

from digitrec.feedback import FeedbackStore, images28_of


@pytest.fixture(scope="module")
def db_url(tmp_path_factory) -> str:
    """The server's corrections database: a fresh SQLite file."""
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'feedback.sqlite3'}"


@pytest.fixture(scope="module")
def server(tmp_path_factory, db_url):
    """`digitrec serve` storing corrections in `db_url`; yields its base URL."""
    with digitrec_server(tmp_path_factory.mktemp("server") / "serve.log",
                         env={"DIGITREC_DB_URL": db_url}) as base:
        yield base


def rows(db_url: str) -> list:
    """The stored corrections, oldest first."""
    store = FeedbackStore.open(db_url)
    try:
        return list(store.all())
    finally:
        store.close()


def test_correct_a_digit_see_it_stored_then_undo(page, db_url):  # noqa: F811
    before = len(rows(db_url))
    draw(page, ONE)
    assert shown_digit(page) == "1"
    assert page.locator("#fix").is_visible() and page.locator("#fix-number").is_hidden()
    assert page.locator("#fix-digits button").count() == 10
    page.get_by_role("button", name="It was 7").click()
    page.wait_for_function("document.querySelector('#fix-status').textContent"
                           ".startsWith('Thanks')", timeout=15_000)
    assert page.locator("#fix-status").inner_text() == "Thanks — saved as 7"
    stored = rows(db_url)
    assert len(stored) == before + 1
    row = stored[-1]
    assert (row.label, row.predicted, row.mode, row.source) == ("7", "1", "digit", "page")
    assert row.image.startswith(b"\x89PNG") and images28_of(row).max() > 200
    undo = page.locator("#fix-undo")
    assert undo.is_visible()
    undo.focus()
    page.keyboard.press("Enter")  # the keyboard works too
    page.wait_for_function("document.querySelector('#fix-status').textContent"
                           ".startsWith('Undone')", timeout=15_000)
    assert len(rows(db_url)) == before and undo.is_hidden()


def test_correct_a_number_with_the_keyboard(page, db_url):  # noqa: F811
    before = len(rows(db_url))
    page.get_by_label("Number mode").check()
    draw(page, FOUR + TWO)
    assert page.locator("#result-number").inner_text().strip() == "42"
    assert page.locator("#fix-digits").is_hidden() and page.locator("#fix-number").is_visible()
    page.locator("#fix-text").fill("4x")
    page.keyboard.press("Enter")
    assert "Type the digits" in page.locator("#fix-status").inner_text()
    page.locator("#fix-text").fill("47")
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelector('#fix-status').textContent"
                           ".startsWith('Thanks')", timeout=15_000)
    assert page.locator("#fix-status").inner_text() == "Thanks — saved as 47"
    row = rows(db_url)[-1]
    assert len(rows(db_url)) == before + 1
    assert (row.label, row.predicted, row.mode) == ("47", "42", "number")
    assert images28_of(row).shape == (2, 28, 28)
    page.locator("#fix-text").fill("123")  # three digits where two were read: refused, 422
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelector('#fix-status').textContent"
                           ".startsWith('Not saved')", timeout=15_000)
    assert "2 were found" in page.locator("#fix-status").inner_text()
    assert len(rows(db_url)) == before + 1
    page.click("#clear")
    assert page.locator("#fix").is_hidden()
