// SPDX-License-Identifier: Apache-2.0
//
// Interop test of `threadline export jaeger`: the OpenTelemetry JS SDK sends
// two linked traces through a real threadline-agent into a real collector
// (binaries from TL_COLLECTOR, TL_AGENT, TL_CLI; free loopback ports; a
// temporary dir); then the CLI exports them to OTLP receivers written here,
// independently of our encoder: Node's http server, zlib to gunzip and
// protobufjs decoding with the official OTLP .proto files in proto/.
//
//   1. Export both traces: every span the receiver decodes matches
//      `threadline trace show --json` field by field, and nothing else arrives.
//      Again with --batch-spans 2: requests of at most 2 spans, same spans.
//   2. A receiver answering 503 + Retry-After: 1 twice, then 200: the export
//      succeeds after 3 requests, each at least ~1 s after the previous one.
//   3. A receiver answering 400: exit 1, the message names 400 and the
//      receiver's text, exactly one request.
//   4. --file: the Jaeger UI upload JSON. Every span's processID is in
//      processes, every reference resolves to a span in the file, times are
//      µs, tags carry the types the OTLP export carried.
//
//   node export.mjs
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import {
  SANITIZER_REPORTS, binaries, diff, dieWith, hrClock, requirePackages, run, showTrace, sleep, startStack, stopChecked,
  waitDelivered,
} from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const protoRoot = path.resolve(here, '..', '..', 'proto');
const die = dieWith('export');

if (process.argv.length > 2) die(`unknown argument '${process.argv[2]}'\nusage: node export.mjs`);
requirePackages(here, ['@opentelemetry/sdk-trace-base', 'protobufjs'], die);
const bins = binaries(die);

const api = await import('@opentelemetry/api');
const { BasicTracerProvider, BatchSpanProcessor } = await import('@opentelemetry/sdk-trace-base');
const { resourceFromAttributes } = await import('@opentelemetry/resources');
const { W3CTraceContextPropagator } = await import('@opentelemetry/core');
const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-proto');
const protobuf = (await import('protobufjs')).default;

// ---- the official OTLP messages ----

const pbRoot = new protobuf.Root();
pbRoot.resolvePath = (origin, target) => (path.isAbsolute(target) ? target : path.join(protoRoot, target));
pbRoot.loadSync('opentelemetry/proto/collector/trace/v1/trace_service.proto', { keepCase: true });
pbRoot.resolveAll();
const ExportReq = pbRoot.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest');
const ExportResp = pbRoot.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse');

function decodeRequest(buf) {
  const msg = ExportReq.decode(buf);
  return ExportReq.toObject(msg, { longs: String, enums: String, bytes: String, defaults: true, oneofs: true, arrays: true });
}

// ---- the CLI ----

const cliReports = [];

// The CLI runs while this process serves the receiver, so it must not block the event loop.
// curl honours *_proxy variables: loopback must never go through a proxy.
function cli(args, timeoutMs = 60000) {
  return new Promise((resolve) => {
    const env = { ...process.env, no_proxy: '127.0.0.1,localhost', NO_PROXY: '127.0.0.1,localhost' };
    const c = spawn(bins.cli, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    let out = '';
    let err = '';
    c.stdout.on('data', (d) => { out += d; });
    c.stderr.on('data', (d) => { err += d; });
    const timer = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.on('close', (code, signal) => {
      clearTimeout(timer);
      for (const r of SANITIZER_REPORTS) {
        if (err.includes(r)) cliReports.push(`threadline ${args.join(' ')}: sanitizer report ("${r}"):\n${err}`);
      }
      resolve({ code, signal, out, err, cmd: `threadline ${args.join(' ')}` });
    });
  });
}

// ---- the receiver ----

// Answers requests from script (the last entry repeats) and records each request.
async function receiver(script) {
  const got = [];
  const srv = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const at = performance.now();
      const raw = Buffer.concat(chunks);
      const rec = { at, headers: req.headers, method: req.method, url: req.url, raw, body: null, error: null };
      try {
        rec.body = req.headers['content-encoding'] === 'gzip' ? zlib.gunzipSync(raw) : raw;
        rec.decoded = decodeRequest(rec.body);
      } catch (e) {
        rec.error = e.message;
      }
      const step = script[Math.min(got.length, script.length - 1)];
      got.push(rec);
      res.writeHead(step.status, step.headers ?? {});
      res.end(step.body ?? '');
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return {
    got,
    url: `http://127.0.0.1:${srv.address().port}/v1/traces`,
    close: () => new Promise((r) => srv.close(r)),
  };
}

const okAnswer = { status: 200, headers: { 'content-type': 'application/x-protobuf' },
                   body: Buffer.from(ExportResp.encode(ExportResp.create({})).finish()) };

// ---- OTLP as `trace show --json` prints it ----

const hex = (b64) => Buffer.from(b64 ?? '', 'base64').toString('hex');
const stripPrefix = (s, p) => (typeof s === 'string' && s.startsWith(p) ? s.slice(p.length) : s);

function anyJson(v) {
  switch (v?.value) {
    case 'string_value': return v.string_value;
    case 'bool_value': return v.bool_value;
    case 'int_value': return Number(v.int_value);
    case 'double_value': return v.double_value;
    case 'bytes_value': return v.bytes_value;
    case 'array_value': return (v.array_value.values ?? []).map(anyJson);
    case 'kvlist_value': return kvJson(v.kvlist_value.values);
    default: return null;
  }
}

function kvJson(kvs) {
  const o = {};
  for (const kv of kvs ?? []) o[kv.key] = anyJson(kv.value);
  return o;
}

// Every span of every request, as { trace_id, span: <the trace show shape> }.
function receivedSpans(got) {
  const out = [];
  for (const rec of got) {
    for (const rs of rec.decoded?.resource_spans ?? []) {
      const resource = kvJson(rs.resource?.attributes);
      for (const ss of rs.scope_spans ?? []) {
        for (const s of ss.spans ?? []) {
          out.push({
            trace_id: hex(s.trace_id),
            span: {
              span_id: hex(s.span_id),
              parent_span_id: hex(s.parent_span_id),
              service: String(resource['service.name'] ?? ''),
              name: s.name,
              kind: stripPrefix(s.kind, 'SPAN_KIND_'),
              start_unix_nano: s.start_time_unix_nano,
              end_unix_nano: s.end_time_unix_nano,
              status: { code: stripPrefix(s.status?.code ?? 'STATUS_CODE_UNSET', 'STATUS_CODE_'),
                        message: s.status?.message ?? '' },
              attributes: kvJson(s.attributes),
              events: (s.events ?? []).map((e) => ({ name: e.name, time_unix_nano: e.time_unix_nano,
                                                     attributes: kvJson(e.attributes) })),
              links: (s.links ?? []).map((l) => ({ trace_id: hex(l.trace_id), span_id: hex(l.span_id),
                                                   trace_state: l.trace_state, attributes: kvJson(l.attributes) })),
              trace_state: s.trace_state,
              flags: s.flags,
              resource,
              scope: { name: ss.scope?.name ?? '', version: ss.scope?.version ?? '' },
            },
            raw: s,
          });
        }
      }
    }
  }
  return out;
}

// The received spans must be exactly the stored ones: same set, every field equal.
function compareWithStore(label, received, shown, problems) {
  const d = [];
  const byId = new Map();
  for (const r of received) {
    const key = `${r.trace_id}/${r.span.span_id}`;
    if (byId.has(key)) d.push(`span ${key} arrived twice`);
    byId.set(key, r);
  }
  let stored = 0;
  for (const t of shown) {
    for (const s of t.spans) {
      stored++;
      const key = `${t.trace_id}/${s.span_id}`;
      const r = byId.get(key);
      if (!r) {
        d.push(`span ${key} (${s.name}) was not exported`);
        continue;
      }
      byId.delete(key);
      // The receiver's view is the expectation: trace show must say the same about every field.
      diff(`span ${s.name} ${key}`, r.span, s, false, d);
    }
  }
  for (const key of byId.keys()) d.push(`span ${key} was exported but is not stored`);
  if (received.length === 0) d.push('no span arrived');
  if (d.length > 0) problems.push(`${label}: ${d.length} difference(s):\n  ${d.join('\n  ')}`);
  else console.log(`export(${label}): ${stored} spans, every field equal to trace show --json`);
}

// ---- the traces ----

function makeProvider(service, extra, url) {
  const resource = resourceFromAttributes({ 'service.name': service, ...extra });
  const exporter = new OTLPTraceExporter({ url });
  return new BasicTracerProvider({ resource, spanProcessors: [new BatchSpanProcessor(exporter)] });
}

async function sendTraces(httpPort) {
  const url = `http://127.0.0.1:${httpPort}/v1/traces`;
  const front = makeProvider('export-frontend', { 'service.version': '2.0.1', 'deployment.replicas': 3,
                                                  'deployment.canary': false, 'cloud.zones': ['a', 'b'] }, url);
  const model = makeProvider('export-model', { 'ml.model.version': 7, 'host.load': 0.5 }, url);
  const tFront = front.getTracer('export.frontend', '0.3.0');
  const tModel = model.getTracer('export.model');
  const { SpanKind, SpanStatusCode, ROOT_CONTEXT, trace, defaultTextMapSetter, defaultTextMapGetter } = api;
  const at = hrClock(987654);

  const train = tModel.startSpan('train model', { kind: SpanKind.INTERNAL, startTime: at(-60000) });
  train.setAttribute('ml.epochs', 12);
  train.end(at(-30000, 7));

  const root = tFront.startSpan('POST /predict', {
    kind: SpanKind.SERVER,
    startTime: at(0, 1),
    attributes: {
      'http.request.method': 'POST', 'str.unicode': 'h\u00e9llo \u2713 "q" \\ \n\t', 'str.empty': '',
      'bool.true': true, 'bool.false': false, 'int.pos': 42, 'int.neg': -42, 'int.max_safe': Number.MAX_SAFE_INTEGER,
      'dbl.pi': 3.141592653589793, 'dbl.tenth': 0.1, 'dbl.tiny': 5e-324,
      'arr.str': ['a', '', 'c\u00e9'], 'arr.bool': [true, false], 'arr.int': [1, -2, 3000000000], 'arr.dbl': [1.5, 0.1],
    },
  });
  root.addEvent('request.received', { 'payload.bytes': 512, 'payload.kind': 'json', 'payload.ratio': 0.75 }, at(1, 999));
  root.addEvent('no attributes', undefined, at(2));

  const propagator = new W3CTraceContextPropagator();
  const carrier = {};
  propagator.inject(trace.setSpan(ROOT_CONTEXT, root), carrier, defaultTextMapSetter);
  carrier.tracestate = 'threadline=export,vendor=abc';
  const remote = propagator.extract(ROOT_CONTEXT, carrier, defaultTextMapGetter);

  const call = tFront.startSpan('call model', { kind: SpanKind.CLIENT, startTime: at(3) }, trace.setSpan(ROOT_CONTEXT, root));
  const predict = tModel.startSpan('predict', {
    kind: SpanKind.SERVER, startTime: at(5),
    links: [{ context: train.spanContext(), attributes: { 'link.reason': 'model trained by', 'link.epochs': 12 } }],
  }, remote);
  predict.setAttribute('ml.prediction.id', 'p-export-1');
  const infer = tModel.startSpan('run inference', { kind: SpanKind.INTERNAL, startTime: at(6) },
                                 trace.setSpan(ROOT_CONTEXT, predict));
  const err = new Error('tensor shape mismatch');
  err.name = 'ShapeError';
  infer.recordException(err, at(9));
  infer.setStatus({ code: SpanStatusCode.ERROR, message: 'tensor shape mismatch' });
  infer.end(at(10, 123));
  const publish = tModel.startSpan('publish', { kind: SpanKind.PRODUCER, startTime: at(11) }, trace.setSpan(ROOT_CONTEXT, predict));
  publish.end(at(12));
  const consume = tFront.startSpan('consume', { kind: SpanKind.CONSUMER, startTime: at(13) }, trace.setSpan(ROOT_CONTEXT, root));
  consume.setStatus({ code: SpanStatusCode.OK });
  consume.end(at(14));
  predict.setStatus({ code: SpanStatusCode.ERROR, message: 'inference failed' });
  predict.end(at(15));
  call.end(at(16));
  root.end(at(20, 5));

  for (const p of [front, model]) {
    await p.forceFlush();
    await p.shutdown();
  }
  return { traceId: root.spanContext().traceId, linkedTraceId: train.spanContext().traceId };
}

// ---- the Jaeger file ----

function jaegerType(v) {
  switch (v?.value) {
    case 'bool_value': return 'bool';
    case 'int_value': return 'int64';
    case 'double_value': return 'float64';
    case 'bytes_value': return 'binary';
    default: return 'string';
  }
}

function checkJaegerFile(doc, received, problems) {
  const d = [];
  const data = doc.data;
  if (!Array.isArray(data)) {
    problems.push(`jaeger file: "data" is not an array: ${JSON.stringify(doc).slice(0, 200)}`);
    return;
  }
  if (doc.total !== data.length) d.push(`total ${doc.total} for ${data.length} traces`);
  const ids = new Set();
  for (const t of data) for (const s of t.spans ?? []) ids.add(`${t.traceID}/${s.spanID}`);
  const byKey = new Map(received.map((r) => [`${r.trace_id}/${r.span.span_id}`, r]));
  let spans = 0;
  let refs = 0;
  for (const t of data) {
    for (const s of t.spans ?? []) {
      spans++;
      const key = `${s.traceID}/${s.spanID}`;
      const proc = t.processes?.[s.processID];
      if (!proc) d.push(`${key}: processID ${JSON.stringify(s.processID)} is not in processes`);
      for (const r of s.references ?? []) {
        refs++;
        if (r.refType !== 'CHILD_OF' && r.refType !== 'FOLLOWS_FROM') d.push(`${key}: refType ${r.refType}`);
        if (!ids.has(`${r.traceID}/${r.spanID}`)) d.push(`${key}: reference ${r.refType} ${r.traceID}/${r.spanID} resolves to no span in the file`);
      }
      const o = byKey.get(key);
      if (!o) {
        d.push(`${key}: not among the exported OTLP spans`);
        continue;
      }
      const start = BigInt(o.raw.start_time_unix_nano);
      const end = BigInt(o.raw.end_time_unix_nano);
      if (s.startTime !== Number(start / 1000n)) d.push(`${key}: startTime ${s.startTime}, expected ${start / 1000n} µs`);
      if (s.duration !== Number((end - start) / 1000n)) d.push(`${key}: duration ${s.duration}, expected ${(end - start) / 1000n} µs`);
      if (s.operationName !== o.span.name) d.push(`${key}: operationName ${s.operationName}`);
      if (proc && proc.serviceName !== o.span.service) d.push(`${key}: serviceName ${proc.serviceName}, expected ${o.span.service}`);
      if (o.span.parent_span_id && !(s.references ?? []).some((r) => r.refType === 'CHILD_OF' && r.spanID === o.span.parent_span_id)) {
        d.push(`${key}: no CHILD_OF reference to its parent ${o.span.parent_span_id}`);
      }
      for (const l of o.span.links) {
        if (!(s.references ?? []).some((r) => r.spanID === l.span_id && r.traceID === l.trace_id)) d.push(`${key}: link to ${l.trace_id}/${l.span_id} missing`);
      }
      for (const kv of o.raw.attributes ?? []) {
        const tag = (s.tags ?? []).find((x) => x.key === kv.key);
        if (!tag) {
          d.push(`${key}: no tag ${kv.key}`);
          continue;
        }
        const type = jaegerType(kv.value);
        if (tag.type !== type) d.push(`${key}: tag ${kv.key} has type ${tag.type}, expected ${type}`);
        const exp = anyJson(kv.value);
        const got = Array.isArray(exp) || (exp !== null && typeof exp === 'object') ? JSON.parse(tag.value) : tag.value;
        const dd = [];
        diff(`${key}: tag ${kv.key}`, exp, got, true, dd);
        d.push(...dd);
      }
      const logs = s.logs ?? [];
      if (logs.length !== o.span.events.length) d.push(`${key}: ${logs.length} logs for ${o.span.events.length} events`);
      o.span.events.forEach((e, i) => {
        const lg = logs[i];
        if (!lg) return;
        if (lg.timestamp !== Number(BigInt(e.time_unix_nano) / 1000n)) d.push(`${key}: log ${i} timestamp ${lg.timestamp}`);
        if (!(lg.fields ?? []).some((f) => f.key === 'event' && f.value === e.name)) d.push(`${key}: log ${i} lacks event=${e.name}`);
      });
    }
  }
  if (spans !== received.length) d.push(`${spans} spans in the file, ${received.length} exported over OTLP`);
  if (d.length > 0) problems.push(`jaeger file: ${d.length} problem(s):\n  ${d.join('\n  ')}`);
  else console.log(`export(file): ${data.length} traces, ${spans} spans, ${refs} references all resolved, µs times, typed tags`);
}

// ---- main ----

await run('export', 'export', async (tmpDir) => {
  const { collector, agent, collectorUrl, httpPort } = await startStack(bins, tmpDir);

  const { traceId, linkedTraceId } = await sendTraces(httpPort);
  await waitDelivered(httpPort);
  const shown = [showTrace(bins, collectorUrl, traceId), showTrace(bins, collectorUrl, linkedTraceId)];
  const problems = [];
  const base = ['--collector', collectorUrl, 'export', 'jaeger', '--trace', traceId, '--trace', linkedTraceId];

  // 1. everything arrives, every field as stored
  let received = [];
  {
    const rx = await receiver([okAnswer]);
    const r = await cli([...base, '--otlp', rx.url, '--header', 'Authorization: Bearer s3cret']);
    await rx.close();
    if (r.code !== 0) problems.push(`${r.cmd}: exit ${r.code}\n${r.err}`);
    if (rx.got.length !== 1) problems.push(`one batch expected, the receiver got ${rx.got.length} requests`);
    for (const [i, rec] of rx.got.entries()) {
      if (rec.error) problems.push(`request ${i}: ${rec.error}`);
      if (rec.method !== 'POST' || rec.url !== '/v1/traces') problems.push(`request ${i}: ${rec.method} ${rec.url}`);
      if (rec.headers['content-type'] !== 'application/x-protobuf') problems.push(`request ${i}: content-type ${rec.headers['content-type']}`);
      if (rec.headers['content-encoding'] !== 'gzip') problems.push(`request ${i}: content-encoding ${rec.headers['content-encoding']}`);
      if (rec.headers.authorization !== 'Bearer s3cret') problems.push(`request ${i}: authorization ${rec.headers.authorization}`);
    }
    received = receivedSpans(rx.got);
    compareWithStore('otlp', received, shown, problems);
    const want = shown[0].spans.length + shown[1].spans.length;
    if (!new RegExp(`^exported 2 traces, ${want} spans to ${rx.url.replace(/[.]/g, '\\.')} in 1 batch \\(1 request\\)$`, 'm').test(r.out)) {
      problems.push(`summary line: ${JSON.stringify(r.out)}`);
    }
    if (r.err.includes('\r')) problems.push(`progress on a stderr that is not a terminal: ${JSON.stringify(r.err)}`);
  }
  {
    const rx = await receiver([okAnswer]);
    const r = await cli([...base, '--otlp', rx.url, '--batch-spans', '2', '--no-gzip']);
    await rx.close();
    if (r.code !== 0) problems.push(`${r.cmd}: exit ${r.code}\n${r.err}`);
    const sizes = rx.got.map((rec) => receivedSpans([rec]).length);
    if (sizes.some((n) => n < 1 || n > 2)) problems.push(`--batch-spans 2: requests of ${sizes.join(', ')} spans`);
    if (rx.got.some((rec) => rec.headers['content-encoding'] !== undefined)) problems.push('--no-gzip: a request was encoded');
    compareWithStore('otlp --batch-spans 2', receivedSpans(rx.got), shown, problems);
  }

  // 2. 503 + Retry-After: 1, twice, then 200
  {
    const busy = { status: 503, headers: { 'retry-after': '1', 'content-type': 'text/plain' }, body: 'overloaded' };
    const rx = await receiver([busy, busy, okAnswer]);
    const r = await cli([...base, '--otlp', rx.url]);
    await rx.close();
    const gaps = rx.got.slice(1).map((g, i) => g.at - rx.got[i].at);
    if (r.code !== 0) problems.push(`503 twice then 200: exit ${r.code}\n${r.err}`);
    if (rx.got.length !== 3) problems.push(`503 twice then 200: ${rx.got.length} requests, expected 3`);
    if (gaps.some((g) => g < 990)) problems.push(`503 + Retry-After: 1: requests ${gaps.map((g) => g.toFixed(0)).join(', ')} ms apart`);
    if (!/\(3 requests, 2 retried\)/.test(r.out)) problems.push(`503 twice then 200: summary ${JSON.stringify(r.out)}`);
    if (!/503/.test(r.err)) problems.push(`503 twice then 200: the retries were not reported: ${JSON.stringify(r.err)}`);
    if (r.code === 0 && rx.got.length === 3) console.log(`export(retry): 3 requests, ${gaps.map((g) => g.toFixed(0)).join(' and ')} ms apart`);
  }

  // 3. 400: a clear error, no retry
  {
    const bad = { status: 400, headers: { 'content-type': 'text/plain' }, body: 'span 2: name too long\nmore detail' };
    const rx = await receiver([bad, okAnswer]);
    const r = await cli([...base, '--otlp', rx.url]);
    await sleep(300); // a retry would come by now
    await rx.close();
    if (r.code === 0) problems.push('400: the export claimed success');
    if (r.code !== 1) problems.push(`400: exit ${r.code}, expected 1`);
    if (!r.err.includes('HTTP 400') || !r.err.includes('span 2: name too long') || !r.err.includes(rx.url)) {
      problems.push(`400: the message does not name the URL, the status and the answer: ${JSON.stringify(r.err)}`);
    }
    if (rx.got.length !== 1) problems.push(`400: ${rx.got.length} requests, expected exactly 1`);
    else console.log(`export(400): exit ${r.code}, one request, "${r.err.trim().split('\n')[0]}"`);
  }

  // 4. the Jaeger UI file
  {
    const file = path.join(tmpDir, 'jaeger.json');
    const r = await cli([...base, '--file', file]);
    if (r.code !== 0) problems.push(`${r.cmd}: exit ${r.code}\n${r.err}`);
    else {
      checkJaegerFile(JSON.parse(fs.readFileSync(file, 'utf8')), received, problems);
      if (!/^wrote 2 traces, \d+ spans, \d+ processes to /m.test(r.out) || /not in the file/.test(r.out)) {
        problems.push(`file summary: ${JSON.stringify(r.out)}`);
      }
      if (fs.readdirSync(tmpDir).some((f) => f.startsWith('jaeger.json.tmp'))) problems.push('a temporary file was left behind');
    }
  }

  // usage errors name the flag
  for (const [args, needle] of [[['--trace', traceId], '--otlp URL or --file PATH'],
                                [['--trace', 'xyz', '--file', '-'], '--trace'],
                                [['--trace', traceId, '--otlp', 'ftp://x'], '--otlp'],
                                [['--trace', traceId, '--file', '-', '--batch-spans', '0'], '--batch-spans'],
                                [['--since', '1h', '--frobnicate', '--file', '-'], '--frobnicate']]) {
    const r = await cli(['--collector', collectorUrl, 'export', 'jaeger', ...args]);
    if (r.code !== 2 || !r.err.includes(needle)) problems.push(`${r.cmd}: exit ${r.code}, expected 2 naming ${needle}: ${r.err.split('\n')[0]}`);
  }

  problems.push(...cliReports);
  await stopChecked([agent, collector], problems);
  return problems;
});
