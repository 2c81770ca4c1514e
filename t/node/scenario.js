#!/usr/bin/env node
// The BullMQ scenarios the interop tests run against a worker, C or Node:
//
//   scenario.js PORT QUEUE run [node]   add every kind of job, wait until
//                                       each is done, print what Node sees:
//                                       getJob fields, logs, QueueEvents per
//                                       job, getJobCounts (timestamps and
//                                       ids left out).  "node": run Node's
//                                       own Worker with the ping processor.
//   scenario.js PORT QUEUE pause        pause(): a new job stays waiting;
//                                       resume(): it completes
//   scenario.js PORT QUEUE workers      getWorkers()
'use strict';

const { bullmq, connection, sleep, ping, out } = require('./lib');

const [port, queueName, mode, extra] = process.argv.slice(2);
const conn = connection(port);

const variants = [
    ['standard', { n: 1, progress: 42, log: 'hello' }, {}, 'completed'],
    ['delayed', { n: 2 }, { delay: 400 }, 'completed'],
    ['prioritized', { n: 3 }, { priority: 5 }, 'completed'],
    ['lifo', { n: 4 }, { lifo: true }, 'completed'],
    ['custom-id', { n: 5 }, { jobId: 'custom-1' }, 'completed'],
    ['fixed-retry', { fail: 'boom', failTimes: 1 },
     { attempts: 3, backoff: { type: 'fixed', delay: 200 } }, 'completed'],
    ['expo-fail', { fail: 'always' },
     { attempts: 3, backoff: { type: 'exponential', delay: 100 } }, 'failed'],
    ['immediate-retry', { fail: 'once', failTimes: 1 }, { attempts: 2 },
     'completed'],
    ['single-fail', { fail: 'nope' }, {}, 'failed'],
    ['remove-complete', { n: 10 }, { removeOnComplete: true }, 'completed'],
    ['keep-age', { n: 11 },
     { removeOnComplete: { age: 3600, count: 10 }, removeOnFail: 5 },
     'completed'],
    ['keep-logs', { log: 'only-last', progress: { step: 2 } }, { keepLogs: 1 },
     'completed'],
    ['stack-limit', { fail: 'x' }, { attempts: 2, stackTraceLimit: 1 },
     'failed'],
    ['backoff-number', { fail: 'b', failTimes: 1 }, { attempts: 2, backoff: 50 },
     'completed'],
];

async function report(queue, jobs, events) {
    const result = {};
    for (const [name, id] of Object.entries(jobs)) {
        const job = await queue.getJob(id);
        const r = { events: events.filter(e => e.jobId === id).map(e => {
            const copy = Object.assign({}, e);
            delete copy.jobId;
            delete copy.id;
            if (copy.event === 'delayed') copy.delay = 'ts';
            return copy;
        }) };
        if (!job) {
            r.removed = true;
        } else {
            r.state = await job.getState();
            r.name = job.name;
            r.data = job.data;
            r.opts = job.opts;
            r.returnvalue = job.returnvalue;
            r.failedReason = job.failedReason;
            r.stacktraceLength = job.stacktrace.length;
            r.attemptsMade = job.attemptsMade;
            r.attemptsStarted = job.attemptsStarted;
            r.stalledCounter = job.stalledCounter;
            r.progress = job.progress;
            r.priority = job.priority;
            r.delay = job.delay;
            r.processedOn = typeof job.processedOn === 'number';
            r.finishedOn = typeof job.finishedOn === 'number';
            r.processedBy = typeof job.processedBy === 'string';
            r.logs = await queue.getJobLogs(id);
        }
        result[name] = r;
    }
    return result;
}

async function run() {
    const queue = new bullmq.Queue(queueName, { connection: conn });
    // from the start of the stream: the queue is new, and '$' would miss
    // what happens before QueueEvents' first read
    const qe = new bullmq.QueueEvents(queueName, { connection: conn, lastEventId: '0-0' });
    const events = [];
    const kinds = ['added', 'waiting', 'active', 'progress', 'completed',
                   'failed', 'delayed', 'retries-exhausted', 'stalled',
                   'removed', 'duplicated'];
    for (const kind of kinds) {
        qe.on(kind, args => events.push(Object.assign({ event: kind }, args)));
    }
    await qe.waitUntilReady();
    await queue.waitUntilReady();

    let worker;
    if (extra === 'node') {
        worker = new bullmq.Worker(queueName, ping, { connection: conn, name: 'node-ping' });
    }

    const jobs = {};
    const expect = {};
    for (const [name, data, opts, end] of variants) {
        const job = await queue.add(name, data, opts);
        jobs[name] = job.id;
        expect[job.id] = end;
    }

    const deadline = Date.now() + 30000;
    const done = () => Object.values(jobs).every(id =>
        events.some(e => e.jobId === id && e.event === expect[id]));
    while (!done() && Date.now() < deadline) {
        await sleep(50);
    }
    await sleep(300);

    const result = { done: done(), jobs: await report(queue, jobs, events),
                     counts: await queue.getJobCounts() };
    out(result);

    if (worker) await worker.close();
    await qe.close();
    await queue.close();
}

async function pause() {
    const queue = new bullmq.Queue(queueName, { connection: conn });
    const result = {};
    await queue.pause();
    result.paused = await queue.isPaused();
    const job = await queue.add('while-paused', { p: 1 });
    await sleep(1500);
    result.stateWhilePaused = await job.getState();
    result.countsWhilePaused = await queue.getJobCounts('waiting', 'active', 'completed');
    await queue.resume();
    const deadline = Date.now() + 10000;
    while (Date.now() < deadline && (await job.getState()) !== 'completed') {
        await sleep(50);
    }
    result.stateAfterResume = await job.getState();
    out(result);
    await queue.close();
}

async function workers() {
    const queue = new bullmq.Queue(queueName, { connection: conn });
    const list = await queue.getWorkers();
    out(list.map(w => ({ name: w.name, rawname: w.rawname })));
    await queue.close();
}

({ run, pause, workers })[mode]().catch(err => {
    process.stderr.write(`scenario ${mode}: ${err.stack}\n`);
    process.exit(1);
});
