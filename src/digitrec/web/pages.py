"""The one page: drawing pad, upload and results (everything else happens in static/app.js)."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

pages = Blueprint("pages", __name__)


@pages.get("/")
def index() -> str:
    """The drawing / upload page."""
    recognizer = current_app.extensions["digitrec.recognizer"]
    return render_template("index.html", version=recognizer.version,
                           inference=recognizer.inference)
