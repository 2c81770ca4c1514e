#!/usr/bin/env node
// The Node side of the C-producer tests:
//
//   producer.js PORT QUEUE add SPEC     SPEC: JSON [[name, data, opts], ...];
//                                       adds each with Queue.add, prints
//                                       [{id, hash}] (the stored job hashes)
//   producer.js PORT QUEUE hashes IDS   prints [{id, hash}] of those jobs
//   producer.js PORT QUEUE wait IDS     waits (20 s at most) until each job
//                                       is completed, failed or gone, then
//                                       prints {id: {state, returnvalue,
//                                       failedReason, attemptsMade}}
'use strict';

const { bullmq, IORedis, connection, sleep, out } = require('./lib');

const [port, queueName, mode, ...rest] = process.argv.slice(2);
const conn = connection(port);

async function hashes(ids) {
    const redis = new IORedis(conn);
    const list = [];
    for (const id of ids) {
        list.push({ id, hash: await redis.hgetall(`bull:${queueName}:${id}`) });
    }
    redis.disconnect();
    return list;
}

async function main() {
    const queue = new bullmq.Queue(queueName, { connection: conn });

    if (mode === 'add') {
        const ids = [];
        for (const [name, data, opts] of JSON.parse(rest[0])) {
            ids.push((await queue.add(name, data, opts)).id);
        }
        out(await hashes(ids));

    } else if (mode === 'hashes') {
        out(await hashes(rest));

    } else if (mode === 'wait') {
        const result = {};
        const deadline = Date.now() + 20000;
        for (const id of rest) {
            for (;;) {
                const job = await queue.getJob(id);
                const state = job ? await job.getState() : 'gone';
                if (['completed', 'failed', 'gone'].includes(state) || Date.now() > deadline) {
                    result[id] = job ? { state, returnvalue: job.returnvalue,
                                         failedReason: job.failedReason,
                                         attemptsMade: job.attemptsMade }
                                     : { state };
                    break;
                }
                await sleep(50);
            }
        }
        out(result);
    }

    await queue.close();
}

main().catch(err => {
    process.stderr.write(`producer ${mode}: ${err.stack}\n`);
    process.exit(1);
});
