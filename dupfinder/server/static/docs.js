// An offline API reference: each operation of /openapi.json with its fields, an example body and a
// form to send it. Swagger UI would need a CDN; this needs only the server.
"use strict";

let spec = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

function resolve(schema) {
  while (schema && schema.$ref) schema = spec.components.schemas[schema.$ref.split("/").pop()];
  return schema || {};
}

function typeName(schema) {
  schema = resolve(schema);
  if (schema.anyOf) return schema.anyOf.map(typeName).join(" | ");
  if (schema.type === "array") return typeName(schema.items) + "[]";
  return schema.title && !schema.type ? schema.title : schema.type || "object";
}

function constraints(schema) {
  const out = [];
  const all = [schema, ...(schema.anyOf || [])];
  for (const s of all) {
    if (s.minimum !== undefined) out.push(`≥ ${s.minimum}`);
    if (s.maximum !== undefined) out.push(`≤ ${s.maximum}`);
    if (s.minLength !== undefined) out.push(`${s.minLength}+ chars`);
    if (s.maxLength !== undefined) out.push(`≤ ${s.maxLength} chars`);
    if (s.minItems !== undefined) out.push(`${s.minItems}+ items`);
    if (s.maxItems !== undefined) out.push(`≤ ${s.maxItems} items`);
  }
  if (schema.default !== undefined) out.push(`default ${JSON.stringify(schema.default)}`);
  return out.join(", ");
}

function fieldsTable(schema) {
  schema = resolve(schema);
  const props = schema.properties || {};
  const required = new Set(schema.required || []);
  const rows = Object.entries(props).map(([name, s]) => el("tr", {},
    el("td", {}, el("code", {}, name), required.has(name) ? " *" : ""),
    el("td", {}, typeName(s)),
    el("td", {}, [s.description || resolve(s).description || "", constraints(s)].filter(Boolean).join(" — "))));
  return rows.length ? el("table", {}, el("tr", {}, el("th", {}, "field"), el("th", {}, "type"), el("th", {}, "notes")), ...rows) : "";
}

function operation(path, method, op) {
  const body = op.requestBody && op.requestBody.content["application/json"];
  const bodySchema = body ? resolve(body.schema) : null;
  const example = bodySchema && bodySchema.examples ? bodySchema.examples[0] : null;
  const params = (op.parameters || []).filter((p) => p.in === "path");
  const secured = (op.security || []).length > 0;
  const card = el("section", { class: "op" },
    el("h2", {}, el("span", { class: "method " + method }, method.toUpperCase()), " ", el("code", {}, path)),
    el("p", {}, op.summary || ""), secured ? el("p", { class: "muted" }, "Needs the API key when the server has one.") : "");
  if (bodySchema) card.append(el("h3", {}, "Body"), fieldsTable(bodySchema));
  const responses = Object.entries(op.responses || {}).map(([code, r]) => `${code} ${r.description}`).join(" · ");
  card.append(el("p", { class: "muted" }, "Answers: " + responses));
  const form = el("form", {});
  const inputs = {};
  for (const p of params) {
    inputs[p.name] = el("input", { placeholder: p.name, required: "" });
    form.append(el("label", {}, p.name, inputs[p.name]));
  }
  let text = null;
  if (bodySchema) {
    text = el("textarea", { rows: "4", spellcheck: "false" });
    text.value = JSON.stringify(example || {}, null, 2);
    form.append(text);
  }
  const out = el("pre", { class: "out" });
  form.append(el("button", { type: "submit" }, "Send"), out);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let url = path;
    for (const p of params) url = url.replace(`{${p.name}}`, encodeURIComponent(inputs[p.name].value));
    const headers = text ? { "Content-Type": "application/json" } : {};
    const key = document.getElementById("key").value.trim();
    if (key) headers.Authorization = "Bearer " + key;
    try {
      const response = await fetch(url, { method: method.toUpperCase(), headers, body: text ? text.value : undefined });
      out.textContent = `${response.status} ${response.statusText}\n` + await response.text();
    } catch (e) {
      out.textContent = String(e);
    }
  });
  card.append(el("details", {}, el("summary", {}, "Try it"), form));
  return card;
}

document.addEventListener("DOMContentLoaded", async () => {
  spec = await (await fetch("/openapi.json")).json();
  document.getElementById("title").textContent = `${spec.info.title} ${spec.info.version} API`;
  document.getElementById("about").prepend(spec.info.description + " ");
  const ops = document.getElementById("ops");
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) ops.append(operation(path, method, op));
  }
});
