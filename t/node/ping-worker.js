#!/usr/bin/env node
// A Node BullMQ Worker running the ping processor until SIGTERM:
//   ping-worker.js PORT QUEUE [CONCURRENCY] [NAME]
// Prints "ready" once it is connected.
'use strict';

const { bullmq, connection, ping } = require('./lib');

const [port, queue, concurrency = '1', name = 'node-ping'] = process.argv.slice(2);

const worker = new bullmq.Worker(queue, ping, {
    connection: connection(port),
    concurrency: Number(concurrency),
    name,
});

worker.on('error', err => process.stderr.write(`worker error: ${err.message}\n`));
worker.waitUntilReady().then(() => process.stdout.write('ready\n'));

let closing = false;
process.on('SIGTERM', async () => {
    if (closing) return;
    closing = true;
    await worker.close();
    process.exit(0);
});
