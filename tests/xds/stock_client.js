// A stock Node gRPC client: @grpc/grpc-js with @grpc/grpc-js-xds, configured only by GRPC_XDS_BOOTSTRAP_CONFIG.
// The same line protocol as stock_client.py: one JSON command a line on stdin, one JSON answer on stdout.
'use strict';
const grpc = require('@grpc/grpc-js');
require('@grpc/grpc-js-xds').register();
const readline = require('readline');

const METHOD = '/xds.test.Echo/Who';
const clients = new Map();
const same = (value) => value;

function call(client, command) {
  return new Promise((resolve) => {
    const metadata = new grpc.Metadata();
    for (const [key, value] of command.metadata || []) metadata.add(key, value);
    const options = {deadline: Date.now() + (command.timeout || 5) * 1000};
    if (command.wait_for_ready) options.waitForReady = true;
    client.makeUnaryRequest(METHOD, same, same, Buffer.alloc(0), metadata, options,
        (error, reply) => resolve(error ? {error: grpc.status[error.code]} : {who: reply.toString()}));
  });
}

async function main() {
  const lines = readline.createInterface({input: process.stdin});
  for await (const line of lines) {
    const command = JSON.parse(line);
    if (!clients.has(command.target)) {
      clients.set(command.target, new grpc.Client(command.target, grpc.credentials.createInsecure()));
    }
    const client = clients.get(command.target);
    const by = {}; const errors = {}; const ms = [];
    for (let i = 0; i < command.calls; i++) {
      const started = process.hrtime.bigint();
      const result = await call(client, command);
      if (result.error) errors[result.error] = (errors[result.error] || 0) + 1;
      else by[result.who] = (by[result.who] || 0) + 1;
      ms.push(Number(process.hrtime.bigint() - started) / 1e6);
    }
    process.stdout.write(JSON.stringify({by, errors, ms}) + '\n');
  }
  for (const client of clients.values()) client.close();
}

main();
