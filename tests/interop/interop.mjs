// SPDX-License-Identifier: Apache-2.0
//
// Interop test: the OpenTelemetry JS SDK (sdk-trace-base with the OTLP proto
// or OTLP http/JSON exporter) sends a multi-service trace to a real
// threadline-agent; `threadline trace show --json` must return every field
// exactly as the SDK recorded it. The script starts a collector and an agent
// itself (binaries from TL_COLLECTOR, TL_AGENT, TL_CLI; free loopback ports;
// a temporary dir), stops them at the end, prints a diff of every mismatch
// and exits non-zero on any.
//
// Lineage across both sources: before the trace, two OpenLineage events
// (START and COMPLETE of the training run ml:train_churn, reading
// s3://warehouse features and writing the model churn version 7) are
// POSTed to the agent's /api/v1/lineage; the serving span of the trace
// carries ml.prediction.id, ml.model.name, ml.model.version and
// ml.input.digest. `threadline lineage explain prediction:ID --json` must
// then lead from the SDK's trace through model:churn:7 and the COMPLETE
// training run to the raw input dataset:s3://warehouse:features.
//
//   node interop.mjs --exporter proto|http
import crypto from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  binaries, cliJson, diff, dieWith, hrClock, hrToNs, requirePackages, run, showTrace, startStack, stopChecked,
  waitDelivered,
} from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const die = dieWith('interop');

// ---- arguments and environment ----

const args = process.argv.slice(2);
let exporterKind = null;
let compression = 'none';
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--exporter' && i + 1 < args.length) exporterKind = args[++i];
  else if (args[i] === '--compression' && i + 1 < args.length) compression = args[++i];
  else die(`unknown argument '${args[i]}'\nusage: node interop.mjs --exporter proto|http [--compression gzip|none]`);
}
if (exporterKind !== 'proto' && exporterKind !== 'http') die('--exporter must be proto or http');

requirePackages(here, ['@opentelemetry/sdk-trace-base'], die);
const bins = binaries(die);

const api = await import('@opentelemetry/api');
const { BasicTracerProvider, BatchSpanProcessor, SimpleSpanProcessor, InMemorySpanExporter } =
  await import('@opentelemetry/sdk-trace-base');
const { resourceFromAttributes, defaultResource } = await import('@opentelemetry/resources');
const { W3CTraceContextPropagator } = await import('@opentelemetry/core');
const { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } = await import('@opentelemetry/semantic-conventions');
const { OTLPTraceExporter } = exporterKind === 'proto'
  ? await import('@opentelemetry/exporter-trace-otlp-proto')
  : await import('@opentelemetry/exporter-trace-otlp-http');

// ---- expected values from what the SDK recorded ----

// The CLI's JSON for an attribute value, following the OTLP mapping the exporters use.
function anyJson(v) {
  if (typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') return v;
  if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
  if (Array.isArray(v)) return v.map(anyJson);
  if (v !== null && typeof v === 'object') {
    const o = {};
    for (const k of Object.keys(v)) o[k] = anyJson(v[k]);
    return o;
  }
  return null;
}

function attrsJson(attrs) {
  const o = {};
  for (const k of Object.keys(attrs ?? {})) if (attrs[k] !== undefined) o[k] = anyJson(attrs[k]);
  return o;
}

const KINDS = ['INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER']; // api.SpanKind order
const CODES = ['UNSET', 'OK', 'ERROR'];

// OTLP span flags: W3C trace flags plus the HAS_IS_REMOTE (0x100) and IS_REMOTE (0x200) bits.
function spanFlags(traceFlags, isRemote) {
  return (traceFlags & 0xff) | 0x100 | (isRemote ? 0x200 : 0);
}

function expectedSpan(s) {
  const ctx = s.spanContext();
  const parent = s.parentSpanContext;
  return {
    span_id: ctx.spanId,
    parent_span_id: parent?.spanId ?? '',
    service: String(s.resource.attributes[ATTR_SERVICE_NAME] ?? ''),
    name: s.name,
    kind: KINDS[s.kind],
    start_unix_nano: hrToNs(s.startTime),
    end_unix_nano: hrToNs(s.endTime),
    status: { code: CODES[s.status.code], message: s.status.message ?? '' },
    attributes: attrsJson(s.attributes),
    events: s.events.map((e) => ({
      name: e.name,
      time_unix_nano: hrToNs(e.time),
      attributes: attrsJson(e.attributes),
    })),
    links: s.links.map((l) => ({
      trace_id: l.context.traceId,
      span_id: l.context.spanId,
      trace_state: l.context.traceState?.serialize() ?? '',
      attributes: attrsJson(l.attributes),
    })),
    trace_state: ctx.traceState?.serialize() ?? '',
    flags: spanFlags(ctx.traceFlags, parent?.isRemote),
    resource: attrsJson(s.resource.attributes),
    scope: { name: s.instrumentationScope.name, version: s.instrumentationScope.version ?? '' },
    missing_parent: false,
  };
}

function expectedTrace(traceId, spans) {
  const mine = spans.filter((s) => s.spanContext().traceId === traceId).map(expectedSpan);
  mine.sort((a, b) => (BigInt(a.start_unix_nano) < BigInt(b.start_unix_nano) ? -1 : 1));
  return { trace_id: traceId, spans: mine };
}

// ---- lineage ----

// The prediction the serving span reports, and the training run that made its model.
const lin = {
  predictionId: `p-interop-${exporterKind}-0001`,
  inputDigest: 'sha256:5f2b7c0d9e1a',
  runId: crypto.randomUUID(),
  producer: 'https://github.com/threadline/threadline/tests/interop',
};

// A RunEvent of spec 2.x as an integration would emit it for the training run.
function trainingEvent(eventType, eventTime) {
  const schema = 'https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent';
  const outputs = eventType !== 'COMPLETE' ? [] : [{
    namespace: 'model://registry',
    name: 'churn',
    facets: {
      threadline_model: { _producer: lin.producer, _schemaURL: 'https://threadline.dev/facets/ModelDatasetFacet.json',
                          name: 'churn', version: '7' },
    },
  }];
  return {
    eventType,
    eventTime: eventTime.toISOString(),
    producer: lin.producer,
    schemaURL: schema,
    run: { runId: lin.runId, facets: {} },
    job: { namespace: 'ml', name: 'train_churn', facets: {} },
    inputs: [{ namespace: 's3://warehouse', name: 'features', facets: {} }],
    outputs,
  };
}

// POSTs the training run's START (two hours ago) and COMPLETE (one hour ago) to the agent.
async function postTrainingRun(httpPort) {
  const now = Date.now();
  for (const [type, ago] of [['START', 2 * 3600e3], ['COMPLETE', 3600e3]]) {
    const r = await fetch(`http://127.0.0.1:${httpPort}/api/v1/lineage`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(trainingEvent(type, new Date(now - ago))),
    });
    const body = await r.text();
    if (r.status !== 200) throw new Error(`POST /api/v1/lineage (${type}): HTTP ${r.status}: ${body}`);
  }
}

function explainPrediction(collectorUrl, id) {
  return cliJson(bins, ['--collector', collectorUrl, 'lineage', 'explain', `prediction:${id}`, '--json'],
                 'threadline lineage explain');
}

// What explain must say: the SDK's trace, the model version, the COMPLETE training run, the raw input.
function checkExplain(got, traceId) {
  const out = [];
  const runId = `run:${lin.runId}`;
  const p = got.prediction ?? {};
  if (p.id !== lin.predictionId) out.push(`prediction.id: expected ${lin.predictionId}, got ${JSON.stringify(p.id)}`);
  if (p.trace_id !== traceId) out.push(`prediction.trace_id: expected the SDK's ${traceId}, got ${JSON.stringify(p.trace_id)}`);
  if (p.model !== 'model:churn:7') out.push(`prediction.model: expected model:churn:7, got ${JSON.stringify(p.model)}`);
  if (p.input_digest !== lin.inputDigest) {
    out.push(`prediction.input_digest: expected ${lin.inputDigest}, got ${JSON.stringify(p.input_digest)}`);
  }
  const m = got.model ?? {};
  if (m.id !== 'model:churn:7') out.push(`model.id: expected model:churn:7, got ${JSON.stringify(m.id)}`);
  if (m.run !== runId) out.push(`model.run: expected the training run ${runId}, got ${JSON.stringify(m.run)}`);
  const run = (got.runs ?? []).find((r) => r.id === runId);
  if (!run) {
    out.push(`runs: no ${runId} among ${JSON.stringify((got.runs ?? []).map((r) => r.id))}`);
  } else {
    if (run.state !== 'COMPLETE') out.push(`runs[${runId}].state: expected COMPLETE, got ${JSON.stringify(run.state)}`);
    if (run.job !== 'job:ml:train_churn') out.push(`runs[${runId}].job: expected job:ml:train_churn, got ${JSON.stringify(run.job)}`);
    if (!(run.inputs ?? []).includes('dataset:s3://warehouse:features')) {
      out.push(`runs[${runId}].inputs: no dataset:s3://warehouse:features in ${JSON.stringify(run.inputs)}`);
    }
    if (!(run.outputs ?? []).includes('model:churn:7')) {
      out.push(`runs[${runId}].outputs: no model:churn:7 in ${JSON.stringify(run.outputs)}`);
    }
  }
  if (!(got.raw_inputs ?? []).includes('dataset:s3://warehouse:features')) {
    out.push(`raw_inputs: no dataset:s3://warehouse:features in ${JSON.stringify(got.raw_inputs)}`);
  }
  const bad = (got.problems ?? []).filter((q) => q.node === runId || q.node === 'model:churn:7');
  for (const q of bad) out.push(`problems: ${JSON.stringify(q)}`);
  return out;
}

// ---- the trace ----

// Wraps an exporter to remember every export result: a failed export must fail the test.
function recording(inner, results) {
  return {
    export(spans, done) {
      inner.export(spans, (res) => {
        results.push(res);
        done(res);
      });
    },
    shutdown: () => inner.shutdown(),
    forceFlush: () => (inner.forceFlush ? inner.forceFlush() : Promise.resolve()),
  };
}

function makeProvider(service, extra, url, memory, results) {
  // memory: what the SDK recorded, read before shutdown (shutdown clears it).
  const resource = defaultResource().merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: service, ...extra }));
  const exporter = new OTLPTraceExporter({ url, compression });
  return new BasicTracerProvider({
    resource,
    spanProcessors: [new SimpleSpanProcessor(memory), new BatchSpanProcessor(recording(exporter, results))],
  });
}

async function sendTrace(httpPort) {
  const url = `http://127.0.0.1:${httpPort}/v1/traces`;
  const memFront = new InMemorySpanExporter();
  const memModel = new InMemorySpanExporter();
  const results = [];
  const front = makeProvider('interop-frontend', { [ATTR_SERVICE_VERSION]: '1.4.2', 'deployment.replicas': 3,
                                                   'deployment.canary': false, 'cloud.zones': ['a', 'b'] },
                             url, memFront, results);
  const model = makeProvider('interop-model', { 'ml.model.name': 'churn', 'ml.model.version': 7 },
                             url, memModel, results);
  const tFront = front.getTracer('interop.frontend', '0.1.0');
  const tModel = model.getTracer('interop.model'); // no version
  const { SpanKind, SpanStatusCode, ROOT_CONTEXT, trace, propagation, defaultTextMapSetter, defaultTextMapGetter } = api;

  const at = hrClock(123457);

  // A span in another trace, for a link (a training run, say).
  const train = tModel.startSpan('train model', { kind: SpanKind.INTERNAL, startTime: at(-60000) });
  train.setAttribute('ml.epochs', 12);
  train.end(at(-30000, 7));

  const root = tFront.startSpan('POST /predict', {
    kind: SpanKind.SERVER,
    startTime: at(0),
    attributes: {
      'http.request.method': 'POST',
      'str.unicode': 'h\u00e9llo \u2713 "quoted" \\ \n\ttab',
      'str.empty': '',
      'bool.true': true,
      'bool.false': false,
      'int.pos': 42,
      'int.neg': -42,
      'int.zero': 0,
      'int.max_safe': Number.MAX_SAFE_INTEGER,
      'int.min_safe': Number.MIN_SAFE_INTEGER,
      'dbl.pi': 3.141592653589793,
      'dbl.neg': -0.001,
      'dbl.tiny': 5e-324,
      'dbl.small': 1.2345e-300, // (a large double is an integer to JS and would go out as intValue)
      'dbl.tenth': 0.1,
      'arr.str': ['a', '', 'c\u00e9'],
      'arr.bool': [true, false, true],
      'arr.int': [1, -2, 3000000000],
      'arr.dbl': [1.5, -2.25, 0.1],
      'arr.empty': [],
    },
  });
  root.addEvent('request.received', { 'payload.bytes': 512, 'payload.kind': 'json', 'payload.gz': false,
                                      'payload.ratio': 0.75, 'payload.tags': ['x', 'y'] }, at(1, 1));
  root.addEvent('no attributes', undefined, at(2));

  // Propagate the context to the other service the way HTTP would: W3C headers.
  const propagator = new W3CTraceContextPropagator();
  const carrier = {};
  propagator.inject(trace.setSpan(ROOT_CONTEXT, root), carrier, defaultTextMapSetter);
  carrier.tracestate = 'threadline=interop,vendor=t61rcWkgMzE';
  const remote = propagator.extract(ROOT_CONTEXT, carrier, defaultTextMapGetter);

  const call = tFront.startSpan('call model', { kind: SpanKind.CLIENT, startTime: at(3) },
                                trace.setSpan(ROOT_CONTEXT, root));
  call.setAttribute('server.port', 8080);

  const predict = tModel.startSpan('predict', { kind: SpanKind.SERVER, startTime: at(5),
                                                links: [{ context: train.spanContext(),
                                                          attributes: { 'link.reason': 'model trained by',
                                                                        'link.epochs': 12 } }] },
                                   remote);
  predict.setAttribute('ml.prediction.id', lin.predictionId);
  predict.setAttributes({ 'ml.model.name': 'churn', 'ml.model.version': '7', 'ml.input.digest': lin.inputDigest });
  predict.setAttribute('ml.score', 0.8125);

  const features = tModel.startSpan('load features', { kind: SpanKind.INTERNAL, startTime: at(6) },
                                    trace.setSpan(ROOT_CONTEXT, predict));
  features.setAttributes({ 'feature.count': 128, 'feature.names': ['age', 'tenure'] });
  features.setStatus({ code: SpanStatusCode.OK });
  features.end(at(20, 999999));

  const infer = tModel.startSpan('run inference', { kind: SpanKind.INTERNAL, startTime: at(21) },
                                 trace.setSpan(ROOT_CONTEXT, predict));
  const err = new Error('tensor shape mismatch: expected [1,128], got [1,127]');
  err.name = 'ShapeError';
  infer.recordException(err, at(29));
  infer.setStatus({ code: SpanStatusCode.ERROR, message: 'tensor shape mismatch' });
  infer.end(at(30));

  const publish = tModel.startSpan('publish result', { kind: SpanKind.PRODUCER, startTime: at(31) },
                                   trace.setSpan(ROOT_CONTEXT, predict));
  publish.addLink({ context: features.spanContext() });
  publish.end(at(32));
  const consume = tFront.startSpan('consume result', { kind: SpanKind.CONSUMER, startTime: at(33) },
                                   trace.setSpan(ROOT_CONTEXT, root));
  consume.end(at(34));

  predict.setStatus({ code: SpanStatusCode.ERROR, message: 'inference failed' });
  predict.end(at(35));
  call.setStatus({ code: SpanStatusCode.ERROR });
  call.end(at(36));
  root.end(at(40, 1));

  // An export error must not stop the comparison: results say what went wrong.
  const flushErrors = [];
  for (const p of [front, model]) await p.forceFlush().catch((e) => flushErrors.push(`forceFlush: ${e.message ?? e}`));
  const spans = [...memFront.getFinishedSpans(), ...memModel.getFinishedSpans()];
  for (const p of [front, model]) await p.shutdown().catch((e) => flushErrors.push(`shutdown: ${e.message ?? e}`));
  return { spans, results, flushErrors, traceId: root.spanContext().traceId,
           linkedTraceId: train.spanContext().traceId };
}

// ---- main ----

await run(`interop-${exporterKind}`, `interop(${exporterKind})`, async (dir) => {
  const { collector, agent, collectorUrl, httpPort: http } = await startStack(bins, dir);

  await postTrainingRun(http);
  const sent = await sendTrace(http);
  const problems = [];
  const bad = sent.results.filter((r) => r.code !== 0);
  for (const r of bad) problems.push(`export failed: ${r.error?.message ?? JSON.stringify(r)}`);
  if (sent.results.length === 0) problems.push('the exporter never exported anything');
  for (const e of sent.flushErrors) problems.push(e);

  await waitDelivered(http);
  for (const traceId of [sent.traceId, sent.linkedTraceId]) {
    const exp = expectedTrace(traceId, sent.spans);
    let got;
    try {
      got = showTrace(bins, collectorUrl, traceId);
    } catch (e) {
      problems.push(e.message);
      continue;
    }
    const d = [];
    diff('trace', exp, got, false, d);
    if (d.length > 0) {
      problems.push(`trace ${traceId}: ${d.length} difference(s):\n  ` + d.join('\n  ') +
                    `\n  expected spans: ${exp.spans.map((s) => s.name).join(', ')}` +
                    `\n  got spans:      ${(got.spans ?? []).map((s) => s.name).join(', ')}`);
    } else {
      console.log(`interop(${exporterKind}): trace ${traceId}: ${exp.spans.length} spans, every field equal`);
    }
  }

  try {
    const got = explainPrediction(collectorUrl, lin.predictionId);
    const d = checkExplain(got, sent.traceId);
    if (d.length > 0) {
      problems.push(`lineage explain prediction:${lin.predictionId}: ${d.length} difference(s):\n  ` + d.join('\n  ') +
                    `\n  got: ${JSON.stringify(got)}`);
    } else {
      console.log(`interop(${exporterKind}): prediction:${lin.predictionId}: trace ${sent.traceId}, model:churn:7, ` +
                  `run:${lin.runId} COMPLETE, raw input dataset:s3://warehouse:features`);
    }
  } catch (e) {
    problems.push(e.message);
  }

  await stopChecked([agent, collector], problems);
  return problems;
});
