"""The site's two static files: its style sheet and the few lines of script behind the feature search
(served at ``assets/``; nothing is fetched from anywhere else)."""

from __future__ import annotations

STYLE = """
:root{color-scheme:light}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1f24;background:#fff}
header{background:#24292f;color:#fff;padding:.6rem 1.5rem;display:flex;gap:1.5rem;align-items:baseline}
header a{color:#fff;text-decoration:none;font-weight:600}header .src{color:#d0d7de;font-size:.8rem}
main{padding:1rem 1.5rem;max-width:90rem}
h1{font-size:1.4rem;margin:.5rem 0}h2{font-size:1.1rem;margin-top:1.8rem}h3{font-size:.95rem;margin:.2rem 0}
table{border-collapse:collapse;margin:.5rem 0;font-size:.82rem}
td,th{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:.8rem;background:#f6f8fa;padding:0 .2rem;border-radius:3px}
.badge{display:inline-block;padding:0 .45rem;border-radius:1rem;font-size:.75rem;font-weight:600;border:1px solid}
.badge.ok{color:#1a7f37;border-color:#1a7f37}.badge.bad{color:#cf222e;border-color:#cf222e}
.badge.muted{color:#57606a;border-color:#8c959f}
.error{color:#cf222e;font-weight:600}.muted{color:#57606a}.empty{padding:1rem;background:#f6f8fa;border-radius:6px}
.charts{display:flex;flex-wrap:wrap;gap:1rem}
.card{display:inline-block;border:1px solid #d0d7de;border-radius:6px;padding:.5rem}
svg.chart .grid{stroke:#eaeef2;stroke-width:1}svg.chart .tick{font-size:10px;fill:#57606a}
svg.chart .chart-title{font-size:12px;font-weight:600;fill:#1b1f24}
.legend{font-size:.8rem;margin:.2rem 0}.legend .key{margin-right:1rem}
.legend .swatch{display:inline-block;width:1.2rem;border-top:3px solid;margin-right:.3rem;vertical-align:middle}
.legend .swatch.dashed{border-top-style:dashed}
input[type=search]{font-size:.9rem;padding:.25rem .5rem;width:20rem}
[hidden]{display:none !important}
"""

SEARCH_JS = """\
"use strict";
// The drift page's feature search: shows the features (table rows and charts) whose name contains
// what was typed. Names are compared as text (data-feature attributes), never parsed as markup.
document.addEventListener("DOMContentLoaded", function () {
  var box = document.getElementById("feature-search");
  if (!box) {
    return;
  }
  var items = Array.prototype.slice.call(document.querySelectorAll("[data-feature]"));
  var count = document.getElementById("feature-count");
  var total = document.querySelectorAll("tr[data-feature]").length;
  function filter() {
    var q = box.value.trim().toLowerCase();
    var shown = 0;
    items.forEach(function (el) {
      var hit = q === "" || el.getAttribute("data-feature").toLowerCase().indexOf(q) !== -1;
      el.hidden = !hit;
      if (hit && el.tagName === "TR") {
        shown += 1;
      }
    });
    if (count) {
      count.textContent = shown + " of " + total + " features";
    }
  }
  box.addEventListener("input", filter);
  filter();
});
"""
