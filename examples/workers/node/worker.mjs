#!/usr/bin/env node
// A corral worker in Node.js (20 or later), standard library only: it runs the external
// job `resize` (examples/workers/node/app.py) against `corral serve`, over the worker
// protocol of docs/http-api.md: claim (long poll, replayed by claim id when an answer is
// lost), heartbeat (every lease, with progress; the answer may cancel a lease or quiet the
// worker) and complete (the outcome, fenced by the lease token, claiming the next one in
// the same round trip).
//
//   CORRAL_URL=http://127.0.0.1:8000 CORRAL_TOKEN=... node worker.mjs [--once]
//
// --once: exit 0 as soon as a claim finds nothing to do (for tests and cron).
// Environment: CORRAL_URL, CORRAL_TOKEN (a worker token: corral token create --worker),
// CORRAL_WORKER (this worker's name), STEP_MS (how long one step of `resize` takes),
// HEARTBEAT_MS (how often leases are renewed; keep it well under the server's lease).

import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";

const BASE = (process.env.CORRAL_URL ?? "http://127.0.0.1:8000").replace(/\/$/, "") + "/api/v1";
const TOKEN = process.env.CORRAL_TOKEN;
const WORKER = process.env.CORRAL_WORKER ?? `node:${hostname()}:${process.pid}`;
const STEP_MS = Number(process.env.STEP_MS ?? 200);
const HEARTBEAT_MS = Number(process.env.HEARTBEAT_MS ?? 5000);
const ONCE = process.argv.includes("--once");
const WAIT = ONCE ? 0 : 20; // seconds a claim waits for work

if (!TOKEN) {
  console.error("worker: set CORRAL_TOKEN to a worker token (corral token create --worker)");
  process.exit(2);
}

let stopping = false;
let claiming = null; // the AbortController of a claim waiting for work
for (const signal of ["SIGTERM", "SIGINT"]) {
  // Finish the running iteration, commit it, claim nothing more. A claim still waiting is
  // dropped (if the server leased something meanwhile, that lease expires: nothing lost).
  process.on(signal, () => {
    stopping = true;
    claiming?.abort();
  });
}

function log(message, fields = {}) {
  console.log(JSON.stringify({ worker: WORKER, message, ...fields }));
}

// One POST; network errors and 503 are retried with the same body (a claim keeps its
// claim_id, so a retried claim whose first answer was lost gets the same leases).
async function post(path, body, signal = undefined) {
  for (let delay = 250; ; delay = Math.min(delay * 2, 5000)) {
    let response;
    try {
      response = await fetch(BASE + path, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${TOKEN}` },
        body: JSON.stringify(body),
        signal,
      });
    } catch (error) {
      if (signal?.aborted) return { status: 0, data: { leases: [] } };
      log("server unreachable, trying again", { path, error: String(error.cause ?? error) });
      await sleep(delay);
      continue;
    }
    if (response.status === 503) {
      await sleep(Number(response.headers.get("retry-after") ?? 1) * 1000);
      continue;
    }
    const data = await response.json();
    if (response.status === 200 || response.status === 409) return { status: response.status, data };
    throw new Error(`${path} answered ${response.status}: ${JSON.stringify(data)}`);
  }
}

function claimBody() {
  return { worker: WORKER, jobs: ["resize"], max: 1, wait: WAIT, claim_id: randomUUID() };
}

// --- the job -----------------------------------------------------------------------------

class Cancelled extends Error {}

// `resize`: `steps` steps of STEP_MS each, progress reported with every heartbeat. A lease
// the server cancels stops it between steps.
async function resize(lease, running) {
  const { image, width, steps = 5 } = lease.params;
  if (image.endsWith(".broken")) throw new Error(`cannot read ${image}`);
  for (let step = 0; step < steps; step++) {
    if (running.cancel) throw new Cancelled(running.cancel);
    await sleep(STEP_MS);
    running.progress = { done: step + 1, total: steps };
  }
  return { image, width, output: image.replace(/(\.\w+)?$/, `-${width}$1`) };
}

// --- one iteration -------------------------------------------------------------------------

async function heartbeat(running) {
  const beat = { process_id: running.lease.process_id, token: running.lease.token, progress: running.progress };
  const { data } = await post("/worker/heartbeat", { worker: WORKER, leases: [beat] });
  for (const answer of data.leases) {
    if (answer.action === "cancel") running.cancel = answer.reason;
  }
  if (data.worker !== "continue") {
    log(`told to ${data.worker}: finishing what runs, claiming nothing more`);
    stopping = true;
  }
}

// Run one lease; returns the complete's answer (with the next leases, if it claimed).
async function run(lease) {
  const running = { lease, progress: lease.progress, cancel: null };
  const beating = setInterval(() => heartbeat(running).catch((e) => log(`heartbeat: ${e}`)), HEARTBEAT_MS);
  let outcome;
  try {
    await heartbeat(running); // the first progress, and a cancel asked for already
    const result = await resize(lease, running);
    outcome = { kind: "returned", result, progress: running.progress };
  } catch (error) {
    if (error instanceof Cancelled) {
      if (error.message !== "cancel_requested") {
        // The lease is gone (expired, taken over): whatever we send would be refused.
        log("lease lost, iteration dropped", { process_id: lease.process_id, reason: error.message });
        return { leases: [] };
      }
      outcome = { kind: "cancelled" };
    } else {
      outcome = { kind: "raised", error: { type: error.name, message: error.message, traceback: error.stack ?? "" } };
    }
  } finally {
    clearInterval(beating);
  }
  const body = { process_id: lease.process_id, attempt: lease.attempt, token: lease.token, outcome };
  if (!stopping) body.next = claimBody();
  const { status, data } = await post("/worker/complete", body);
  if (status === 409) {
    log("commit refused", { process_id: lease.process_id, reason: data.reason });
    return { leases: [] };
  }
  log("committed", { process_id: lease.process_id, job: lease.job, attempt: lease.attempt, status: data.status });
  return data;
}

// --- the loop --------------------------------------------------------------------------------

async function main() {
  log("started", { base: BASE });
  let leases = [];
  while (!stopping) {
    if (leases.length === 0) {
      claiming = new AbortController();
      leases = (await post("/worker/claim", claimBody(), claiming.signal)).data.leases;
      claiming = null;
      if (leases.length === 0 && ONCE) break;
    }
    const next = [];
    for (const lease of leases) {
      const answer = await run(lease);
      next.push(...(answer.leases ?? []));
    }
    leases = next;
  }
  log("stopped");
}

main().catch((error) => {
  console.error(`worker: ${error.message}`);
  process.exit(1);
});
