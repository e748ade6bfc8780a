// Theme: follows prefers-color-scheme until the trader picks one with the toggle; the pick is kept in
// localStorage. A classic script in <head> so the saved theme applies before the first paint.
(function () {
  "use strict";
  var KEY = "ticker.theme";
  var root = document.documentElement;
  var media = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;

  var chosen = null;
  try { chosen = localStorage.getItem(KEY); } catch (e) { /* storage blocked: follow the system */ }
  function saved() { return chosen; }
  function current() {
    var s = saved();
    if (s === "dark" || s === "light") return s;
    return media && media.matches ? "dark" : "light";
  }
  function apply() {
    // Always the resolved theme, so style.css needs one palette per theme and no media query.
    root.setAttribute("data-theme", current());
    var btn = document.getElementById("theme-toggle");
    if (btn) {
      var dark = current() === "dark";
      btn.setAttribute("aria-pressed", dark ? "true" : "false");
      btn.title = dark ? "Switch to the light theme" : "Switch to the dark theme";
    }
  }
  apply();
  if (media && media.addEventListener) media.addEventListener("change", apply);
  document.addEventListener("DOMContentLoaded", function () {
    apply();
    document.getElementById("theme-toggle").addEventListener("click", function () {
      var next = current() === "dark" ? "light" : "dark";
      chosen = next;
      try { localStorage.setItem(KEY, next); } catch (e) { /* storage blocked: this page view only */ }
      apply();
    });
  });
})();
