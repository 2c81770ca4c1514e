#!/usr/bin/env node
// The peer: the seeds' own stack for an authenticated, rate-limited, cached
// read - Express 5 with jsonwebtoken, ioredis and a Redis rate limiter, in a
// cluster of N workers, as the seeds deploy it.
//
//   server.js PORT REDIS_PORT SECRET_FILE [WORKERS]
//
// GET /bench/cached: verify the HS256 bearer token, take one unit of the
// caller's Redis rate limit, answer the body cached in Redis.
'use strict';

const cluster = require('cluster');
const fs = require('fs');

const [port, redisPort, secretFile, workers = '2'] = process.argv.slice(2);

if (cluster.isPrimary) {
    for (let i = 0; i < Number(workers); i++) {
        cluster.fork();
    }
    let ready = 0;
    cluster.on('message', (w, msg) => {
        if (msg === 'ready' && ++ready === Number(workers)) {
            process.stdout.write('ready\n');
        }
    });
    process.on('SIGTERM', () => {
        for (const id in cluster.workers) {
            cluster.workers[id].kill('SIGTERM');
        }
        process.exit(0);
    });
    return;
}

const express = require('express');
const jwt = require('jsonwebtoken');
const IORedis = require('ioredis');
const { RateLimiterRedis } = require('rate-limiter-flexible');

const secret = fs.readFileSync(secretFile, 'utf8').replace(/[\r\n]+$/, '');
const redis = new IORedis({ host: '127.0.0.1', port: Number(redisPort), enableOfflineQueue: false });
const limiter = new RateLimiterRedis({
    storeClient: redis,
    keyPrefix: 'peer:rl',
    points: 1000000,
    duration: 1,
});

const app = express();

app.get('/bench/cached', async (req, res) => {
    const auth = req.get('authorization') || '';
    let claims;
    try {
        claims = jwt.verify(auth.replace(/^Bearer /, ''), secret, { algorithms: ['HS256'] });
    } catch (e) {
        return res.status(401).json({ success: false, error: { code: 'UNAUTHORIZED', message: e.message } });
    }
    try {
        await limiter.consume(claims.sub);
    } catch (e) {
        return res.status(429).json({ success: false, error: { code: 'RATE_LIMITED', message: 'slow down' } });
    }
    const body = await redis.get('peer:cache:body');
    res.type('application/json').send(body);
});

redis.on('ready', () => {
    app.listen(Number(port), '127.0.0.1', () => process.send('ready'));
});
