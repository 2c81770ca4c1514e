#!/usr/bin/env node
// Job schedulers for the interop tests:
//
//   scheduler.js PORT QUEUE upsert ID REPEAT   Queue.upsertJobScheduler(ID,
//                                             REPEAT (JSON), {name: 'tick',
//                                             data: {s: ID}})
//   scheduler.js PORT QUEUE report ID [TZ PATTERN]
//                                             the scheduler as getJobScheduler
//                                             sees it, its completed jobs,
//                                             its delayed next job (with its
//                                             stored opts); with a pattern,
//                                             also cron-parser's next time
//                                             after the delayed job's
//                                             timestamp (what C must match)
'use strict';

const path = require('path');
const { bullmq, IORedis, connection, out } = require('./lib');
const { CronExpressionParser } = require(path.join(__dirname, '..', '..', 'tools',
                                                   'node_modules', 'cron-parser'));

const [port, queueName, mode, id, arg1, arg2] = process.argv.slice(2);
const conn = connection(port);

async function main() {
    const queue = new bullmq.Queue(queueName, { connection: conn });

    if (mode === 'upsert') {
        const job = await queue.upsertJobScheduler(id, JSON.parse(arg1),
                                                   { name: 'tick', data: { s: id } });
        out({ id: job && job.id });

    } else if (mode === 'report') {
        const redis = new IORedis(conn);
        const sch = await queue.getJobScheduler(id);
        const prefix = `repeat:${id}:`;
        const completed = (await queue.getCompleted(0, -1)).filter(j => j.id.startsWith(prefix));
        const delayed = [];
        for (const j of await queue.getDelayed(0, -1)) {
            if (j.id.startsWith(prefix)) {
                delayed.push({ id: j.id, name: j.name, data: j.data,
                               storedOpts: JSON.parse(await redis.hget(`bull:${queueName}:${j.id}`, 'opts')),
                               rjk: await redis.hget(`bull:${queueName}:${j.id}`, 'rjk') });
            }
        }
        const result = {
            scheduler: sch,
            completed: completed.map(j => ({ id: j.id, returnvalue: j.returnvalue,
                                             processedBy: j.processedBy })),
            delayed,
            now: Date.now(),
        };
        if (arg2 && delayed.length) {
            // from the time the worker scheduled it (the job's timestamp)
            const from = new Date(delayed[0].storedOpts.timestamp);
            const it = CronExpressionParser.parse(arg2, { currentDate: from,
                                                          tz: arg1 || undefined });
            result.cronNext = it.next().getTime();
        }
        out(result);
        redis.disconnect();
    }

    await queue.close();
}

main().catch(err => {
    process.stderr.write(`scheduler ${mode}: ${err.stack}\n`);
    process.exit(1);
});
