/* The machines table: sort, filter, search and pages over the JSON written beside it. No
   network, no library; text goes in with textContent only, never as markup. */
(function () {
  "use strict";
  var section = document.getElementById("machines");
  var source = document.getElementById("machines-data");
  if (!section || !source) { return; }
  var payload = JSON.parse(source.textContent);
  var fields = payload.fields, columns = payload.columns;
  var count = columns[fields[0]].length, rows = [];
  for (var position = 0; position < count; position++) { rows.push(position); }
  var currency = section.getAttribute("data-currency");
  var pageRows = Number(section.getAttribute("data-page-rows")) || 100;
  var tbody = section.querySelector("tbody");
  var status = document.getElementById("machines-status");
  var search = document.getElementById("machines-search");
  var previous = document.getElementById("machines-previous");
  var next = document.getElementById("machines-next");
  var selects = {};
  ["subscription", "plan", "cheaper", "findings"].forEach(function (name) {
    selects[name] = document.getElementById("machines-filter-" + name);
  });
  var names = columns.name.map(function (name) { return String(name).toLowerCase(); });
  var state = {sort: "billed", direction: -1, page: 0, shown: rows};

  function money(value) {
    if (value === null) { return ""; }
    var text = Math.abs(value).toLocaleString("en-US",
      {minimumFractionDigits: 2, maximumFractionDigits: 2});
    var sign = value < -0.005 ? "\u2212" : "";
    return currency === "USD" ? sign + "$" + text : sign + text + " " + currency;
  }
  var show = {
    utilization: function (v) { return v === null ? "" : (v * 100).toFixed(1) + "%"; },
    billable_hours: function (v) { return v === null ? "" : v.toFixed(2); },
    billed: money, hourly: money, mde_part: money, seat: money, saving: money
  };

  function fill(select, values) {
    values.sort().forEach(function (value) {
      var option = document.createElement("option");
      option.value = value; option.textContent = value;
      select.appendChild(option);
    });
  }
  function distinct(field, split) {
    var seen = {};
    columns[field].forEach(function (value) {
      if (value === null || value === "") { return; }
      (split ? String(value).split(" ") : [String(value)]).forEach(function (part) {
        seen[part] = true;
      });
    });
    return Object.keys(seen);
  }
  fill(selects.subscription, distinct("subscription"));
  fill(selects.plan, distinct("plan"));
  fill(selects.cheaper, distinct("cheaper"));
  fill(selects.findings, distinct("findings", true));

  function apply() {
    var words = search.value.trim().toLowerCase();
    var wanted = {};
    Object.keys(selects).forEach(function (name) { wanted[name] = selects[name].value; });
    var shown = [];
    var c = columns;
    for (var index = 0; index < count; index++) {
      if (words && names[index].indexOf(words) < 0 &&
          String(c.subscription[index]).indexOf(words) < 0) { continue; }
      if (wanted.subscription && c.subscription[index] !== wanted.subscription) { continue; }
      if (wanted.plan && c.plan[index] !== wanted.plan) { continue; }
      if (wanted.cheaper && c.cheaper[index] !== wanted.cheaper) { continue; }
      if (wanted.findings &&
          (" " + c.findings[index] + " ").indexOf(" " + wanted.findings + " ") < 0) { continue; }
      shown.push(index);
    }
    var column = columns[state.sort], direction = state.direction;
    shown.sort(function (a, b) {
      var x = column[a], y = column[b];
      if (x === y) { return a - b; }
      if (x === null) { return 1; }
      if (y === null) { return -1; }
      return (x < y ? -1 : 1) * direction;
    });
    state.shown = shown;
    state.page = 0;
    draw();
  }

  function draw() {
    var shown = state.shown, pages = Math.max(1, Math.ceil(shown.length / pageRows));
    state.page = Math.min(state.page, pages - 1);
    var first = state.page * pageRows, last = Math.min(shown.length, first + pageRows);
    var fragment = document.createDocumentFragment();
    for (var index = first; index < last; index++) {
      var row = shown[index], line = document.createElement("tr");
      fields.forEach(function (name) {
        var cell = document.createElement("td"), value = columns[name][row];
        cell.textContent = show[name] ? show[name](value) : (value === null ? "" : value);
        if (show[name]) { cell.className = "num"; }
        if (name === "subscription") { cell.className = "id subscription"; }
        line.appendChild(cell);
      });
      fragment.appendChild(line);
    }
    tbody.replaceChildren(fragment);
    status.textContent = shown.length === 0 ? "No machine matches." :
      "Machines " + (first + 1).toLocaleString("en-US") + "\u2013" +
      last.toLocaleString("en-US") + " of " + shown.length.toLocaleString("en-US") +
      (shown.length < count ? " (of " + count.toLocaleString("en-US") + ")" : "") +
      ", page " + (state.page + 1).toLocaleString("en-US") + " of " +
      pages.toLocaleString("en-US");
    previous.disabled = state.page === 0;
    next.disabled = state.page >= pages - 1;
    section.querySelectorAll("th[data-field]").forEach(function (th) {
      th.setAttribute("aria-sort", th.getAttribute("data-field") !== state.sort ? "none" :
        (state.direction > 0 ? "ascending" : "descending"));
    });
  }

  var pending = null;
  search.addEventListener("input", function () {
    clearTimeout(pending);
    pending = setTimeout(apply, 120);
  });
  Object.keys(selects).forEach(function (name) { selects[name].addEventListener("change", apply); });
  previous.addEventListener("click", function () { state.page -= 1; draw(); });
  next.addEventListener("click", function () { state.page += 1; draw(); });
  section.querySelectorAll("th[data-field]").forEach(function (th) {
    var button = document.createElement("button");
    button.type = "button";
    button.textContent = th.textContent;
    th.textContent = "";
    th.appendChild(button);
    button.addEventListener("click", function () {
      var field = th.getAttribute("data-field");
      state.direction = state.sort === field ? -state.direction : (show[field] ? -1 : 1);
      state.sort = field;
      apply();
    });
  });
  section.querySelector(".table-controls").hidden = false;
  section.querySelector(".static-note").hidden = true;
  apply();
}());
