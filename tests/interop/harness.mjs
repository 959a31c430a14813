// SPDX-License-Identifier: Apache-2.0
//
// What the interop scripts share: checking that the npm packages and the
// binaries are there (a failure with a way out, never a silent skip), a real
// collector and agent on free loopback ports in a temporary dir with their
// output in files, waiting for ready lines and for the agent's spool to
// drain, `threadline trace show --json`, a field-by-field diff, and the end
// of a run: SIGTERM checks, sanitizer reports, logs on failure, clean-up.
// Only node: built-ins here, so it loads before node_modules is checked.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

// What a sanitizer writes when it finds something (any of them fails a run).
export const SANITIZER_REPORTS = ['runtime error:', 'ERROR: AddressSanitizer', 'ERROR: LeakSanitizer'];

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// OTLP nanoseconds (a BigInt) as an HrTime [s, ns], and back as a decimal string.
export const nsToHr = (ns) => [Number(ns / 1000000000n), Number(ns % 1000000000n)];
export const hrToNs = (hr) => (BigInt(hr[0]) * 1000000000n + BigInt(hr[1])).toString();

// Explicit span times (HrTime, nanosecond exact) close to now: at(ms, ns) is now + ms milliseconds + ns,
// where now ends in extraNs nanoseconds past the millisecond.
export function hrClock(extraNs) {
  const base = BigInt(Date.now()) * 1000000n + BigInt(extraNs);
  return (ms, ns = 0) => nsToHr(base + BigInt(ms) * 1000000n + BigInt(ns));
}

// A function that prints "<tag>: msg" and exits 1.
export function dieWith(tag) {
  return (msg) => {
    process.stderr.write(`${tag}: ${msg}\n`);
    process.exit(1);
  };
}

// Dies unless every package (npm name) is installed in dir/node_modules.
export function requirePackages(dir, packages, die) {
  for (const pkg of packages) {
    if (!fs.existsSync(path.join(dir, 'node_modules', ...pkg.split('/')))) {
      die(`${pkg} is not installed in ${dir}/node_modules.\nRun:  (cd ${dir} && npm ci)`);
    }
  }
}

// { agent, collector, cli } from TL_AGENT, TL_COLLECTOR, TL_CLI (meson sets them); dies when one is missing.
export function binaries(die) {
  const bins = {};
  for (const [key, env] of [['agent', 'TL_AGENT'], ['collector', 'TL_COLLECTOR'], ['cli', 'TL_CLI']]) {
    bins[key] = process.env[env];
    if (!bins[key]) die(`${env} is not set (run through 'meson test --suite interop')`);
    if (!fs.existsSync(bins[key])) die(`${env}=${bins[key]} does not exist (build first)`);
  }
  return bins;
}

// ---- processes ----

const started = [];

// Last resort if something throws past a run's clean-up.
process.on('exit', () => {
  for (const p of started) if (!p.exit) p.child.kill('SIGKILL');
});

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// Starts argv with stdout and stderr appended to dir/<name>.out and .err.
function start(dir, name, argv) {
  const out = fs.openSync(path.join(dir, `${name}.out`), 'a');
  const err = fs.openSync(path.join(dir, `${name}.err`), 'a');
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', out, err] });
  fs.closeSync(out);
  fs.closeSync(err);
  const p = { name, child, errPath: path.join(dir, `${name}.err`), exit: null };
  child.on('exit', (code, signal) => { p.exit = { code, signal }; });
  started.push(p);
  return p;
}

const readLog = (p) => (fs.existsSync(p.errPath) ? fs.readFileSync(p.errPath, 'utf8') : '');

async function waitReady(p, needle, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const log = readLog(p);
    if (log.includes(needle)) return;
    if (p.exit) throw new Error(`${p.name} exited (${JSON.stringify(p.exit)}) before '${needle}':\n${log}`);
    if (Date.now() > deadline) throw new Error(`${p.name}: no '${needle}' within ${timeoutMs} ms:\n${log}`);
    await sleep(20);
  }
}

// SIGTERM, then SIGKILL after timeoutMs. Returns the exit ({ code, signal }) or { killed: true }.
async function stop(p, timeoutMs) {
  if (p.exit) return p.exit;
  p.child.kill('SIGTERM');
  const deadline = Date.now() + timeoutMs;
  while (!p.exit && Date.now() < deadline) await sleep(10);
  if (!p.exit) {
    p.child.kill('SIGKILL');
    while (!p.exit) await sleep(10);
    return { killed: true };
  }
  return p.exit;
}

function tail(p) {
  const log = readLog(p);
  return log.length > 3000 ? log.slice(-3000) : log;
}

// A collector and an agent in dir: { collector, agent, collectorUrl, httpPort }.
export async function startStack(bins, dir) {
  const [intake, query, httpPort] = [await freePort(), await freePort(), await freePort()];
  const collectorUrl = `tcp://127.0.0.1:${query}`;
  fs.mkdirSync(path.join(dir, 'data'));
  fs.mkdirSync(path.join(dir, 'spool'));
  const collector = start(dir, 'collector', [bins.collector, '--data', path.join(dir, 'data'),
                                             '--listen', `tcp://127.0.0.1:${intake}`, '--query', collectorUrl,
                                             '--http', '127.0.0.1:0']);
  await waitReady(collector, 'event=collector.ready', 15000);
  const agent = start(dir, 'agent', [bins.agent, '--collector', `tcp://127.0.0.1:${intake}`,
                                     '--http', `127.0.0.1:${httpPort}`, '--spool', path.join(dir, 'spool'),
                                     '--spool-max-bytes', '64MiB']);
  await waitReady(agent, 'event=agent.ready', 15000);
  return { collector, agent, collectorUrl, httpPort };
}

// SIGTERMs each process: it must exit 0 by itself and its log must hold no sanitizer report.
export async function stopChecked(procs, problems) {
  for (const p of procs) {
    const ex = await stop(p, 10000);
    if (ex.killed || ex.code !== 0) problems.push(`${p.name} did not exit cleanly on SIGTERM: ${JSON.stringify(ex)}`);
    // Under -Db_sanitize the daemons report to their logs; any report is a failure.
    const log = readLog(p);
    for (const r of SANITIZER_REPORTS) {
      if (log.includes(r)) problems.push(`${p.name} logged a sanitizer report ("${r}")`);
    }
  }
}

/*
 * Runs body(dir) in a fresh temp dir named tl-<tag>-*: body returns a list of
 * problems. Any problem or exception fails the run (exit 1) with the
 * daemons' logs on stderr and the dir kept; otherwise the dir is removed
 * (unless TL_TEST_KEEP is set) and the process exits 0.
 */
export async function run(tag, label, body) {
  let failed = false;
  let dir = null;
  try {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), `tl-${tag}-`));
    const problems = await body(dir);
    if (problems.length > 0) {
      failed = true;
      process.stderr.write(`${label} FAILED:\n- ${problems.join('\n- ')}\n`);
      for (const p of started) process.stderr.write(`---- ${p.name} stderr ----\n${tail(p)}\n`);
    }
  } catch (e) {
    failed = true;
    process.stderr.write(`${label} FAILED: ${e.stack ?? e}\n`);
    for (const p of started) process.stderr.write(`---- ${p.name} stderr ----\n${tail(p)}\n`);
  } finally {
    for (const p of started) await stop(p, 5000);
    if (dir && !failed && !process.env.TL_TEST_KEEP) fs.rmSync(dir, { recursive: true, force: true });
    else if (dir) process.stderr.write(`${label}: logs kept in ${dir}\n`);
  }
  process.exit(failed ? 1 : 0);
}

// ---- the stored data ----

// A 200 from the agent means the spans are in its spool; they are in the collector once the
// spool is empty again (threadline_agent_spool_batches 0). Waits up to 20 s for that.
export async function waitDelivered(httpPort) {
  const deadline = Date.now() + 20000;
  let last = '';
  while (Date.now() < deadline) {
    const r = await fetch(`http://127.0.0.1:${httpPort}/metrics`);
    const text = await r.text();
    const m = /^threadline_agent_spool_batches (\d+)$/m.exec(text);
    const p = /^threadline_agent_pending_bytes (\d+)$/m.exec(text);
    if (!m || !p) throw new Error('agent /metrics lacks threadline_agent_spool_batches or _pending_bytes');
    if (m[1] === '0' && p[1] === '0') return;
    last = `${m[1]} batches spooled, ${p[1]} bytes pending`;
    await sleep(50);
  }
  throw new Error(`the agent did not deliver its spool within 20 s (${last})`);
}

// `threadline <argv> --json` run to completion, its stdout parsed (what names the command in errors).
export function cliJson(bins, argv, what) {
  const r = spawnSync(bins.cli, argv, { encoding: 'utf8', timeout: 20000 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`threadline ${argv.join(' ')}: exit ${r.status}\n${r.stderr}`);
  try {
    return JSON.parse(r.stdout);
  } catch (e) {
    throw new Error(`${what} printed invalid JSON (${e.message}):\n${r.stdout}`);
  }
}

export function showTrace(bins, collectorUrl, traceId) {
  return cliJson(bins, ['--collector', collectorUrl, 'trace', 'show', traceId, '--json'], 'threadline trace show');
}

// ---- comparing ----

// Every key of exp must be in act with an equal value; extra keys are allowed
// except where strict (and always in attribute and resource maps).
export function diff(where, exp, act, strict, out) {
  if (act === undefined) {
    out.push(`${where}: missing (expected ${JSON.stringify(exp)})`);
    return;
  }
  if (Array.isArray(exp)) {
    if (!Array.isArray(act)) {
      out.push(`${where}: expected an array, got ${JSON.stringify(act)}`);
      return;
    }
    if (exp.length !== act.length) {
      out.push(`${where}: expected ${exp.length} elements, got ${act.length}`);
    }
    for (let i = 0; i < Math.min(exp.length, act.length); i++) {
      const label = exp[i] && typeof exp[i] === 'object' && typeof exp[i].name === 'string' ? ` "${exp[i].name}"` : '';
      diff(`${where}[${i}${label}]`, exp[i], act[i], strict, out);
    }
    return;
  }
  if (exp !== null && typeof exp === 'object') {
    if (act === null || typeof act !== 'object' || Array.isArray(act)) {
      out.push(`${where}: expected an object, got ${JSON.stringify(act)}`);
      return;
    }
    for (const k of Object.keys(exp)) {
      diff(`${where}.${k}`, exp[k], act[k], strict || k === 'attributes' || k === 'resource', out);
    }
    if (strict) {
      for (const k of Object.keys(act)) {
        if (!(k in exp)) out.push(`${where}: unexpected key "${k}" = ${JSON.stringify(act[k])}`);
      }
    }
    return;
  }
  if (exp !== act || typeof exp !== typeof act) {
    out.push(`${where}: expected ${JSON.stringify(exp)}, got ${JSON.stringify(act)}`);
  }
}
