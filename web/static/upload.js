// upload.js — nii's own: the publish form's upload progress. Without
// this script (or without XMLHttpRequest and FormData) the form posts as
// it stands. With it, the form is sent by XMLHttpRequest, in the same
// order of fields (the CSRF token first), and a <progress> element and a
// polite live status follow the upload's progress events. When the node
// has published the file, the form fires "nii:uploaded" (detail: loaded,
// total, url) and, unless a listener prevents it, the browser opens the
// dataset's page. No inline script: the CSP's script-src 'self' allows
// this file only.
(function () {
  "use strict";
  var form = document.querySelector("form[data-upload-progress]");
  if (!form || !window.XMLHttpRequest || !window.FormData) {
    return;
  }
  var group = document.getElementById("upload-progress-group");
  var bar = document.getElementById("upload-progress");
  var status = document.getElementById("upload-status");
  var button = form.querySelector("button[type=submit]");

  function mb(n) {
    return (n / 1048576).toFixed(1) + " MB";
  }
  function say(text) {
    status.textContent = text;
  }

  form.addEventListener("submit", function (ev) {
    var file = form.querySelector("input[type=file]");
    if (!file || !file.files || file.files.length === 0) {
      return; // the node says what is missing
    }
    ev.preventDefault();
    var data = new FormData(form);
    var xhr = new XMLHttpRequest();
    var total = file.files[0].size;
    group.hidden = false;
    bar.max = total || 1;
    bar.value = 0;
    button.disabled = true;
    say("Uploading " + file.files[0].name + ": 0 of " + mb(total) + ".");
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) {
        total = e.total;
        bar.max = e.total;
        bar.value = e.loaded;
        say("Uploaded " + mb(e.loaded) + " of " + mb(e.total) + ".");
      }
    });
    xhr.upload.addEventListener("load", function () {
      bar.value = bar.max;
      say("Uploaded " + mb(total) + ". The node is storing and signing it…");
    });
    xhr.addEventListener("load", function () {
      button.disabled = false;
      var url = xhr.responseURL || "";
      if (xhr.status === 200 && url.indexOf("/datasets/") >= 0) {
        bar.value = bar.max;
        say("Published. Opening the dataset.");
        var done = new CustomEvent("nii:uploaded", {cancelable: true, detail: {loaded: bar.value, total: bar.max, url: url}});
        if (form.dispatchEvent(done)) {
          window.location.assign(url);
        }
        return;
      }
      // The node's error page: show its message, keep the form.
      var msg = "The file was not published.";
      var doc = xhr.responseXML;
      if (doc) {
        var err = doc.getElementById("publish-error") || doc.querySelector("main");
        if (err) {
          msg = err.textContent.replace(/\s+/g, " ").trim();
        }
      }
      say(msg);
    });
    xhr.addEventListener("error", function () {
      button.disabled = false;
      say("The upload failed: the connection to the node was lost. Try again.");
    });
    xhr.open("POST", form.action);
    xhr.responseType = "document";
    xhr.send(data);
  });
})();
