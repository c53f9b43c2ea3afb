/* Log in: check the token against an authenticated call, keep it for this tab, go back to the console. */
(function () {
  "use strict";
  var KEY = "highway.console.token";
  var form = document.getElementById("login");
  var message = document.getElementById("login-error");
  if (document.querySelector('meta[name="highway-auth"]').content === "open") {
    message.textContent = "This worker has no API token: the console needs no login.";
  }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var token = document.getElementById("token").value.trim();
    message.textContent = "";
    fetch("/api/v1/console", { headers: { Authorization: "Bearer " + token }, cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) {
          message.textContent = "That token is not accepted.";
          return;
        }
        if (!response.ok) {
          message.textContent = "The worker answered " + response.status + ".";
          return;
        }
        sessionStorage.setItem(KEY, token);
        var back = decodeURIComponent(location.hash.slice(1));
        location.replace("/console" + (back ? "#" + back : ""));
      })
      .catch(function (error) { message.textContent = "The worker cannot be reached: " + error.message; });
  });
})();
