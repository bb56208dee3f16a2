// Runs first, in <head>: every script error, unhandled promise rejection and console.error call is
// counted in the body's data-script-errors (the first message in data-first-error), which the browser test reads.
(function () {
  'use strict';
  var errors = (window.__dashboardErrors = []);
  function show() {
    if (!document.body) return;
    document.body.setAttribute('data-script-errors', String(errors.length));
    if (errors.length) document.body.setAttribute('data-first-error', errors[0].slice(0, 300));
  }
  function record(message) {
    errors.push(String(message));
    show();
  }
  window.__dashboardShowErrors = show;
  window.addEventListener('error', function (e) {
    record(e && e.message ? e.message : e);
  });
  window.addEventListener('unhandledrejection', function (e) {
    record('unhandled rejection: ' + (e && e.reason ? e.reason : e));
  });
  var consoleError = console.error;
  console.error = function () {
    record('console.error: ' + Array.prototype.map.call(arguments, String).join(' '));
    return consoleError.apply(console, arguments);
  };
  document.addEventListener('DOMContentLoaded', show);
})();
