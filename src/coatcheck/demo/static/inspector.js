// Shows what scripts on this page can read: an HttpOnly session cookie is not in document.cookie.
document.addEventListener("DOMContentLoaded", function () {
  var out = document.getElementById("js-cookies");
  if (!out) return;
  var visible = document.cookie;
  out.textContent = "document.cookie = " + JSON.stringify(visible);
});
