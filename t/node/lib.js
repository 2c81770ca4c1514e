// Shared bits of the Node side of the BullMQ interop tests: BullMQ 6.7.0 and
// ioredis from tools/node_modules (pinned by tools/package-lock.json), and
// the ping processor as Node's Worker runs it, the same as workers/ping.c.
'use strict';

const path = require('path');
const MODULES = path.join(__dirname, '..', '..', 'tools', 'node_modules');

const bullmq = require(path.join(MODULES, 'bullmq'));
const IORedis = require(path.join(MODULES, 'ioredis'));

function connection(port) {
    return { host: '127.0.0.1', port: Number(port), maxRetriesPerRequest: null };
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

// workers/ping.c in JavaScript
async function ping(job) {
    const d = job.data;
    if (d && typeof d === 'object' && !Array.isArray(d)) {
        if (Object.prototype.hasOwnProperty.call(d, 'progress')) {
            await job.updateProgress(d.progress);
        }
        if (typeof d.log === 'string') {
            await job.log(d.log);
        }
        if (typeof d.delayMs === 'number' && d.delayMs > 0) {
            await sleep(d.delayMs);
        }
        if (typeof d.fail === 'string') {
            const times = Number.isInteger(d.failTimes) ? d.failTimes : -1;
            if (times < 0 || job.attemptsMade < times) {
                throw new Error(d.fail);
            }
        }
    }
    return d;
}

function out(value) {
    process.stdout.write(JSON.stringify(value) + '\n');
}

module.exports = { bullmq, IORedis, connection, sleep, ping, out };
