// The runtime inside one Node.js execution environment (a process the executor starts): the
// Node counterpart of python_runtime.py, speaking the same line-delimited JSON protocol (see
// protocol.py). It loads the function's handler once (the init phase), then answers the
// invocations read from stdin one at a time, in order. Console and stdout/stderr output is
// sent back as log messages, formatted as Lambda's Node.js runtime writes them.
'use strict';

const fs = require('fs');
const path = require('path');
const readline = require('readline');
const util = require('util');
const { pathToFileURL } = require('url');

const outFd = Number(process.env.SANDBOX_RUNTIME_FD);
let currentRequestId; // "undefined" in log lines outside an invocation, as in Lambda
let pendingOutput = '';

function send(message) {
  const data = Buffer.from(JSON.stringify(message) + '\n');
  let written = 0;
  while (written < data.length) {
    written += fs.writeSync(outFd, data, written);
  }
}

// CloudWatch Logs' event limit (256 KB less 26 bytes of overhead): Lambda truncates a
// longer line to it (protocol.py's MAX_LOG_LINE_BYTES).
const MAX_LOG_LINE_BYTES = 256 * 1024 - 26;

function sendLog(line) {
  const bytes = Buffer.from(line);
  const kept = bytes.length > MAX_LOG_LINE_BYTES ? bytes.subarray(0, MAX_LOG_LINE_BYTES) : bytes;
  send({ type: 'log', data: kept.toString() + '\n' });
}

// -- output ----------------------------------------------------------------------------

function consoleMethod(level) {
  return (...args) => {
    const time = new Date().toISOString();
    sendLog(`${time}\t${currentRequestId}\t${level}\t${util.format(...args)}`);
  };
}

// Stands in for process.stdout/stderr.write: whole lines go out as log messages.
function writeOutput(chunk, encoding, callback) {
  pendingOutput += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
  const end = pendingOutput.lastIndexOf('\n');
  if (end !== -1) {
    pendingOutput.slice(0, end).split('\n').forEach(sendLog);
    pendingOutput = pendingOutput.slice(end + 1);
  } else if (pendingOutput.length > 4 * MAX_LOG_LINE_BYTES) {
    pendingOutput = pendingOutput.slice(0, MAX_LOG_LINE_BYTES); // truncated when sent anyway
  }
  const done = typeof encoding === 'function' ? encoding : callback;
  if (done) process.nextTick(done);
  return true;
}

function flushOutput() {
  if (pendingOutput) sendLog(pendingOutput);
  pendingOutput = '';
}

function captureOutput() {
  console.log = console.info = consoleMethod('INFO');
  console.warn = consoleMethod('WARN');
  console.error = consoleMethod('ERROR');
  console.debug = consoleMethod('DEBUG');
  process.stdout.write = process.stderr.write = writeOutput;
}

// -- errors ----------------------------------------------------------------------------

// Lambda's error document for a Node.js function (the body of a failed Invoke).
function describe(error) {
  if (util.types.isNativeError(error) || error instanceof Error) {
    const trace = typeof error.stack === 'string' ? error.stack.split('\n') : [];
    return { errorType: error.name, errorMessage: error.message, trace };
  }
  return { errorType: typeof error, errorMessage: String(error), trace: [] };
}

// Logs an error as Lambda does, e.g. `...\tERROR\tInvoke Error \t{"errorType":...}`.
function logError(label, shape) {
  const { errorType, errorMessage, trace } = shape;
  console.error(label, '\t' + JSON.stringify({ errorType, errorMessage, stack: trace }));
}

class InitError extends Error {
  constructor(errorType, message) {
    super(message);
    this.errorType = errorType;
  }
}

// -- init ------------------------------------------------------------------------------

// What require() throws for an ES module it cannot load (Node < 20.19, or top-level await).
const REQUIRE_ESM_ERRORS = ['ERR_REQUIRE_ESM', 'ERR_REQUIRE_ASYNC_MODULE'];

async function importFile(file) {
  return import(pathToFileURL(file).href);
}

// Loads `<task root>/<module path>` (.js, .mjs or .cjs) as CommonJS or as an ES module.
async function loadModule(modulePath) {
  const base = path.resolve(process.env.LAMBDA_TASK_ROOT, modulePath);
  const file = ['.js', '.mjs', '.cjs'].map((ext) => base + ext).find((f) => fs.existsSync(f));
  if (file && file.endsWith('.mjs')) return importFile(file);
  try {
    return require(file || base);
  } catch (error) {
    if (!REQUIRE_ESM_ERRORS.includes(error?.code)) throw error;
    return importFile(file || base);
  }
}

// `_HANDLER` is `<module path>.<export>`, e.g. `app.handler` or `src/app.handler`.
async function loadHandler(spec) {
  const [moduleName, ...exportPath] = path.basename(spec).split('.');
  let userModule;
  try {
    userModule = await loadModule(path.join(path.dirname(spec), moduleName));
  } catch (error) {
    throw new InitError('Runtime.ImportModuleError', String(error));
  }
  const handler = exportPath.reduce((value, name) => value?.[name], userModule);
  if (handler === undefined) {
    throw new InitError('Runtime.HandlerNotFound', `${spec} is undefined or not exported`);
  }
  if (typeof handler !== 'function') {
    throw new InitError('Runtime.HandlerNotFound', `${spec} is not a function`);
  }
  return handler;
}

// -- invocation ------------------------------------------------------------------------

function createContext(request, callback) {
  const env = process.env;
  return {
    awsRequestId: request.request_id,
    invokedFunctionArn: request.invoked_function_arn,
    functionName: env.AWS_LAMBDA_FUNCTION_NAME || '',
    functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION || '$LATEST',
    memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE || '128',
    logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME || '',
    logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME || '',
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, request.deadline_ms - Date.now()),
    done: callback,
    succeed: (result) => callback(null, result),
    fail: (error) => callback(error),
  };
}

// Runs the handler: an async handler settles its promise; a callback-style handler (three
// parameters) calls back; any other handler's return value is its result.
function runHandler(handler, event, request) {
  return new Promise((resolve, reject) => {
    const callback = (error, result) => (error ? reject(error) : resolve(result));
    const returned = handler(event, createContext(request, callback), callback);
    if (handler.length < 3 || typeof returned?.then === 'function') {
      Promise.resolve(returned).then(resolve, reject);
    }
  });
}

async function invoke(handler, request) {
  if (request.trace_id) process.env._X_AMZN_TRACE_ID = request.trace_id;
  else delete process.env._X_AMZN_TRACE_ID;
  let result;
  try {
    const event = request.payload ? JSON.parse(request.payload) : {};
    result = await runHandler(handler, event, request);
  } catch (error) {
    const shape = describe(error);
    logError('Invoke Error', shape);
    return { ok: false, error: shape };
  }
  try {
    return { ok: true, payload: JSON.stringify(result) ?? 'null' };
  } catch (error) {
    const message = `Unable to marshal response: ${error.message}`;
    return { ok: false, error: { errorType: 'Runtime.MarshalError', errorMessage: message } };
  }
}

function sendResult(requestId, outcome) {
  flushOutput();
  send({ type: 'result', request_id: requestId, ...outcome });
}

// An error nothing awaited ends the environment, as in Lambda; the invocation under way fails.
function crash(label, shape, exitCode) {
  logError(label, shape);
  if (currentRequestId !== undefined) sendResult(currentRequestId, { ok: false, error: shape });
  flushOutput();
  process.exit(exitCode);
}

function handleStrayErrors() {
  process.on('uncaughtException', (error) => crash('Uncaught Exception', describe(error), 129));
  process.on('unhandledRejection', (reason) => {
    const shape = {
      errorType: 'Runtime.UnhandledPromiseRejection',
      errorMessage: String(reason),
      trace: describe(reason).trace,
    };
    crash('Unhandled Promise Rejection', shape, 128);
  });
}

async function main() {
  process.chdir(process.env.LAMBDA_TASK_ROOT);
  captureOutput();
  handleStrayErrors();
  let handler;
  try {
    handler = await loadHandler(process.env._HANDLER);
  } catch (error) {
    flushOutput();
    const { errorType, message } = error;
    send({ type: 'init_error', error: { errorType, errorMessage: message } });
    process.exit(0);
  }
  flushOutput();
  send({ type: 'ready' });
  for await (const line of readline.createInterface({ input: process.stdin })) {
    const request = JSON.parse(line);
    currentRequestId = request.request_id;
    const outcome = await invoke(handler, request);
    sendResult(request.request_id, outcome);
    currentRequestId = undefined;
  }
  flushOutput();
  process.exit(0); // stdin ended: the executor (or LocalStack) is gone
}

main();
