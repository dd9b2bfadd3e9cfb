// The console's one way to the API: same origin, the key from session storage, problem bodies
// (RFC 9457) turned into errors that carry their title and detail.

const KEY_ITEM = "metaserve.apiKey";

export function apiKey() {
  return sessionStorage.getItem(KEY_ITEM) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_ITEM, key);
  else sessionStorage.removeItem(KEY_ITEM);
}

export class Problem extends Error {
  constructor(status, body) {
    super(body.title || `HTTP ${status}`);
    this.status = status;
    this.title = body.title || `HTTP ${status}`;
    this.detail = body.detail || "";
    this.type = body.type || "";
    this.body = body;
  }
}

export async function call(method, path, { body, headers = {} } = {}) {
  const sent = { ...headers, Accept: "application/json, application/problem+json" };
  const key = apiKey();
  if (key) sent.Authorization = `Bearer ${key}`;
  if (body !== undefined) sent["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method, headers: sent, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", cache: "no-store",
    });
  } catch (err) {
    throw new Problem(0, { title: "The service cannot be reached", detail: String(err) });
  }
  if (response.status === 204) return { status: 204, data: null, headers: response.headers };
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { title: `HTTP ${response.status}`, detail: text.slice(0, 300) };
  }
  if (!response.ok) throw new Problem(response.status, data || {});
  return { status: response.status, data, headers: response.headers };
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
