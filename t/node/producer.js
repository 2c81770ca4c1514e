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
//   producer.js PORT QUEUE jobs IDS     {id: {state, attemptsMade,
//                                       attemptsStarted, stalledCounter,
//                                       processedBy, failedReason,
//                                       returnvalue}} as getJob sees them
//   producer.js PORT QUEUE bulk N       addBulk N jobs {i}, prints their ids
//   producer.js PORT QUEUE audit N      for jobs 1..N: how many completed,
//                                       which were started more than once
//                                       (ats > 1) or not completed, and how
//                                       many each worker (pb) processed
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

    } else if (mode === 'jobs') {
        const result = {};
        for (const id of rest) {
            const job = await queue.getJob(id);
            result[id] = job ? {
                state: await job.getState(), attemptsMade: job.attemptsMade,
                attemptsStarted: job.attemptsStarted,
                stalledCounter: job.stalledCounter,
                processedBy: job.processedBy, failedReason: job.failedReason,
                returnvalue: job.returnvalue,
            } : { state: 'gone' };
        }
        out(result);

    } else if (mode === 'bulk') {
        const n = Number(rest[0]);
        let added = 0;
        for (let from = 1; from <= n; from += 1000) {
            const batch = [];
            for (let i = from; i < from + 1000 && i <= n; i++) {
                batch.push({ name: 'mixed', data: { i } });
            }
            added += (await queue.addBulk(batch)).length;
        }
        out({ added });

    } else if (mode === 'audit') {
        const n = Number(rest[0]);
        const redis = new IORedis(conn);
        const pipe = redis.pipeline();
        for (let i = 1; i <= n; i++) {
            pipe.hmget(`bull:${queueName}:${i}`, 'ats', 'atm', 'pb', 'returnvalue');
            pipe.zscore(`bull:${queueName}:completed`, String(i));
        }
        const res = await pipe.exec();
        const result = { completed: 0, twice: [], missing: [], byWorker: {},
                         badReturn: [] };
        for (let i = 1; i <= n; i++) {
            const [ats, atm, pb, rv] = res[2 * (i - 1)][1];
            const score = res[2 * (i - 1) + 1][1];
            if (score === null) result.missing.push(i);
            else result.completed++;
            if (Number(ats) !== 1 || Number(atm) !== 1) result.twice.push([i, ats, atm]);
            result.byWorker[pb] = (result.byWorker[pb] || 0) + 1;
            if (rv !== JSON.stringify({ i })) result.badReturn.push(i);
        }
        redis.disconnect();
        out(result);

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
