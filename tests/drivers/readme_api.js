// SPDX-License-Identifier: Apache-2.0
// The README's SQL API through node-postgres, written as its users write it: every parameter
// sent untyped (node-postgres leaves the types to the server), arrays and dates as node-postgres
// converts them. Exits non-zero at the first call that does not do what the README says.
// usage: PGJOBS_TEST_DSN=postgresql://... node tests/drivers/readme_api.js
'use strict';
const assert = require('node:assert/strict');
const { Client } = require('pg');

async function main() {
  const client = new Client({ connectionString: process.env.PGJOBS_TEST_DSN });
  await client.connect();
  const one = async (sql, params) => (await client.query(sql, params)).rows;
  const publish = async (task, extra = {}) => {
    const rows = await one(
      'SELECT job_id FROM jobs.publish(i_task => $1, i_arguments => $2, i_timeout => $3, ' +
        'i_priority => $4, i_max_retries => $5)',
      [task, extra.arguments ?? null, extra.timeout ?? null, extra.priority ?? null,
       extra.max_retries ?? null]);
    return Number(rows[0].job_id);
  };
  const consume = async (n, tasks) =>
    (await one('SELECT job_id, task, arguments, attempts, max_retries, timeout FROM ' +
               'jobs.consume($1, $2)', [n, tasks]))
      .map((r) => ({ ...r, job_id: Number(r.job_id) }));
  const state = async (id) => {
    const queued = await one('SELECT state FROM jobs.all WHERE job_id = $1', [id]);
    if (queued.length) return queued[0].state;
    return (await one('SELECT status FROM jobs.job WHERE job_id = $1', [id]))[0].status;
  };

  // Publish, with named arguments and a JSON object as the arguments.
  const a = await publish('email.send',
                          { arguments: { args: [], kwargs: { to: 'a@example.com' } },
                            timeout: 30, priority: 10, max_retries: 5 });
  const b = await publish('email.send');
  // publish_bulk: composites are written in SQL, their values as parameters.
  const bulk = await one(
    "SELECT job_id FROM jobs.publish_bulk(ARRAY[($1, $2, NULL, NULL, NULL, NULL), " +
      "($3, $4, $5, 120, 5, 0)]::jobs.bulk_job[])",
    ['email.send', { to: 'c@example.com' }, 'thumbnail', { id: 7 }, '2030-01-01 09:00']);
  assert.equal(bulk.length, 2);

  // Consume, then each documented way of finishing a job.
  let taken = await consume(10, ['email.send']);
  assert.equal(taken.length, 3, 'the thumbnail is scheduled for 2030');
  assert.equal(taken[0].job_id, a, 'greater priority first');
  assert.deepEqual(taken[0].arguments, { args: [], kwargs: { to: 'a@example.com' } });
  await one('SELECT jobs.ack($1)', [a]);
  await one('SELECT jobs.ack($1, $2)', [b, taken[1].attempts]);
  const c = taken[2].job_id;
  await one('SELECT jobs.nack($1, $2)', [c, 'SMTP said 451']);
  assert.equal(await state(a), 'success');
  assert.equal(await state(b), 'success');
  assert.equal(await state(c), 'retry_wait');

  const d = await publish('report');
  const e = await publish('report');
  const f = await publish('report');
  taken = await consume(3, ['report']);
  await one('SELECT jobs.nack($1, $2, $3)', [d, 'busy', new Date(Date.now() + 60000)]);
  await one('SELECT jobs.nack($1, $2, $3, $4)', [e, 'boom', null, taken[1].attempts]);
  assert.equal(await state(d), 'retry_wait');
  assert.equal(await state(e), 'retry_wait');
  // A reclaimed attempt is refused with 55000, as the README says.
  await assert.rejects(one('SELECT jobs.ack($1, $2)', [f, 99]), (err) => err.code === '55000');

  // Batches: arrays as node-postgres sends them.
  const ids = [await publish('batch'), await publish('batch'), await publish('batch'),
               await publish('batch'), await publish('batch')];
  taken = await consume(5, ['batch']);
  const acked = await one('SELECT job_id FROM jobs.ack($1, $2)',
                          [[ids[0], ids[1], ids[2]], [1, 1, 1]]);
  assert.deepEqual(acked.map((r) => Number(r.job_id)).sort(), [ids[0], ids[1], ids[2]].sort());
  const nacked = await one('SELECT job_id FROM jobs.nack($1, $2, $3, $4)',
                           [[ids[3], ids[4]], ['timeout', 'HTTP 503'], null, null]);
  assert.equal(nacked.length, 2);
  await one('SELECT jobs.expire()', []);
  await client.end();
  console.log('node-postgres: every documented call form works');
}

main().catch((err) => {
  console.error('node-postgres:', err.stack || err);
  process.exit(1);
});
