// SPDX-License-Identifier: Apache-2.0
// The Grafana dashboards, in plain jsonnet. Variables: the data source, each label of
// _config.groupLabels (the database for the queue, the pool and instance for the workers) and
// the task; every query filters by all of them, so one dashboard shows one database or all of
// them. A top row of stats, then one unit per panel.
local util = import 'util.libsonnet';

{
  local c = self._config,
  local ds = { type: 'prometheus', uid: '${datasource}' },

  local thresholds(steps) = {
    mode: 'absolute',
    steps: [{ color: 'green', value: null }] + [{ color: s[1], value: s[0] } for s in steps],
  },

  // A panel: kind 'timeseries', 'stat', 'table' or 'heatmap'; targets are [expr, legend] pairs.
  local panel(kind, title, description, unit, targets, steps=[], extra={}) = {
    type: kind,
    title: title,
    description: description,
    datasource: ds,
    fieldConfig: { defaults: { unit: unit, thresholds: thresholds(steps) }, overrides: [] },
    targets: [
      {
        refId: std.char(65 + i),
        datasource: ds,
        expr: targets[i][0],
        legendFormat: targets[i][1],
      } + (if kind == 'table' then { instant: true, format: 'table' } else {})
      + (if kind == 'heatmap' then { format: 'heatmap' } else {})
      for i in std.range(0, std.length(targets) - 1)
    ],
    options: if kind == 'stat' then {
      reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
      colorMode: 'background',
      graphMode: 'area',
    } else if kind == 'table' then { showHeader: true }
    else if kind == 'heatmap' then { calculate: false, yAxis: { unit: unit } }
    else { legend: { displayMode: 'list', placement: 'bottom' }, tooltip: { mode: 'multi' } },
  } + extra,

  // Rows of [panel, width]; each row as tall as `height` (stats rows are shorter).
  local layout(rows) =
    local heights = [if std.length([p for p in row if p[0].type != 'stat']) == 0 then 4 else 8 for row in rows];
    local tops = [std.foldl(function(sum, h) sum + h, heights[0:i], 0) for i in std.range(0, std.length(rows) - 1)];
    local placed = std.flattenArrays([
      local row = rows[r];
      [
        row[i][0] {
          gridPos: {
            x: std.foldl(function(sum, p) sum + p[1], row[0:i], 0),
            y: tops[r],
            w: row[i][1],
            h: heights[r],
          },
        }
        for i in std.range(0, std.length(row) - 1)
      ]
      for r in std.range(0, std.length(rows) - 1)
    ]);
    [placed[i] { id: i + 1 } for i in std.range(0, std.length(placed) - 1)],

  // One query variable per label, each filtered by the ones before it.
  local labelVariables(metric, selector, labels) = [
    local before = [
      '%s=~"$%s"' % [l, l]
      for l in labels[0:std.find(labels[i], labels)[0]]
    ];
    local filter = std.join(',', [p for p in [selector] + before if p != '']);
    {
      name: labels[i],
      label: labels[i],
      type: 'query',
      datasource: ds,
      local source = if filter == '' then metric else '%s{%s}' % [metric, filter],
      query: { query: 'label_values(%s, %s)' % [source, labels[i]], refId: 'PrometheusVariableQueryEditor-VariableQuery' },
      definition: 'label_values(%s, %s)' % [source, labels[i]],
      includeAll: true,
      multi: true,
      allValue: '.*',
      current: { selected: true, text: ['All'], value: ['$__all'] },
      refresh: 2,
      sort: 1,
      hide: 0,
      regex: '',
      options: [],
    }
    for i in std.range(0, std.length(labels) - 1)
  ],

  local dashboard(uid, title, description, variables, panels, link) = {
    __inputs: [{
      name: 'DS_PROMETHEUS',
      label: 'Prometheus',
      description: 'The Prometheus that scrapes jobs-exporter and jobs-worker',
      type: 'datasource',
      pluginId: 'prometheus',
      pluginName: 'Prometheus',
    }],
    __requires: [
      { type: 'grafana', id: 'grafana', name: 'Grafana', version: '9.0.0' },
      { type: 'datasource', id: 'prometheus', name: 'Prometheus', version: '1.0.0' },
    ],
    uid: uid,
    title: title,
    description: description,
    tags: c.dashboardTags,
    timezone: c.dashboardTimezone,
    refresh: c.dashboardRefresh,
    time: { from: 'now-6h', to: 'now' },
    schemaVersion: 37,
    editable: true,
    graphTooltip: 1,
    annotations: { list: [] },
    links: [{
      type: 'link',
      title: link.title,
      url: '/d/%s?${__url_time_range}&${__all_variables}' % link.uid,
      icon: 'dashboard',
      includeVars: true,
      keepTime: true,
      tooltip: '',
      targetBlank: false,
      asDropdown: false,
      tags: [],
    }],
    templating: {
      list: [{
        name: 'datasource',
        label: 'Data source',
        type: 'datasource',
        query: 'prometheus',
        current: {},
        hide: 0,
        refresh: 1,
        regex: '',
        options: [],
      }] + variables,
    },
    panels: panels,
  },

  local quantiles(metric, f, qs) = [
    ['histogram_quantile(%g, sum by (le) (rate(%s_bucket{%s}[$__rate_interval])))' % [q, metric, f], 'p%d' % (q * 100)]
    for q in qs
  ],

  local queueLabels = c.groupLabels,
  local workerLabels = std.setUnion(std.set(c.workerGroupLabels), ['instance']),
  local matchers(labels) = std.join(',', ['%s=~"$%s"' % [l, l] for l in labels]),
  // Filters: the database (q), with the task (qt); the workers (w), with the task (wt).
  local q = util.selector(c.exporterSelector, matchers(queueLabels)),
  local qt = util.selector(q, 'task=~"$task"'),
  local w = util.selector(c.workerSelector, matchers(workerLabels)),
  local wt = util.selector(w, 'task=~"$task"'),
  local by(labels) = std.join(', ', labels),
  local where(labels) = std.join('/', ['{{%s}}' % l for l in labels]),
  local rate(metric, f) = 'rate(%s{%s}[$__rate_interval])' % [metric, f],

  local queuePanels = layout([
    [
      [panel('stat', 'Ready jobs', 'Jobs runnable now and not taken by a worker.', 'short', [['sum(pgjobs_jobs{%s})' % util.selector(qt, 'state="ready"'), 'ready']]), 4],
      [panel('stat', 'Running jobs', 'Jobs taken by a worker and within their timeout.', 'short', [['sum(pgjobs_jobs{%s})' % util.selector(qt, 'state="running"'), 'running']]), 4],
      [panel('stat', 'Expired jobs', 'Running jobs past their timeout, waiting to be reclaimed (alert PgjobsJobsExpiring).', 'short', [['sum(pgjobs_jobs{%s})' % util.selector(qt, 'state="expired"'), 'expired']], [[1, 'red']]), 4],
      [panel('stat', 'Oldest runnable job', 'How long the oldest runnable job has waited (alert PgjobsOldestReadyJobTooOld).', 's', [['max(pgjobs_oldest_ready_job_age_seconds{%s})' % qt, 'age']], [[60, 'orange'], [c.oldestReadyJobSeconds, 'red']]), 4],
      [panel('stat', 'Finished per second', 'Jobs finished per second, any status.', 'ops', [['sum(%s)' % rate('pgjobs_jobs_finished_total', qt), 'finished']]), 4],
      [panel('stat', 'Databases up', 'Databases whose exporter reached them in its last scrape, of those selected.', 'short', [['sum(pgjobs_up{%s})' % q, 'up']]), 4],
    ],
    [
      [panel('timeseries', 'Backlog by task and state', 'Jobs in the queue by task and state (ready, scheduled, retry_wait, running, expired).', 'short', [['sum by (task, state) (pgjobs_jobs{%s})' % qt, '{{task}} {{state}}']]), 12],
      [panel('timeseries', 'Oldest runnable job age', 'Seconds since the oldest runnable job of each task became runnable.', 's', [['max by (%s, task) (pgjobs_oldest_ready_job_age_seconds{%s})' % [by(queueLabels), qt], '%s {{task}}' % where(queueLabels)]], [[c.oldestReadyJobSeconds, 'red']]), 12],
    ],
    [
      [panel('timeseries', 'Published and finished per task', 'Jobs queued and finished per second by task: a task whose published rate stays above its finished rate builds a backlog.', 'ops', [
        ['sum by (task) (%s)' % rate('pgjobs_jobs_published_total', qt), 'published {{task}}'],
        ['sum by (task) (%s)' % rate('pgjobs_jobs_finished_total', qt), 'finished {{task}}'],
      ]), 12],
      [panel('timeseries', 'Failure and expiry ratios', 'Share of finished jobs (cancelled ones aside) that failed for good or expired, per task.', 'percentunit', [
        ['sum by (task) (%s) / sum by (task) (%s)' % [rate('pgjobs_jobs_finished_total', util.selector(qt, 'status="failure"')), rate('pgjobs_jobs_finished_total', util.selector(qt, 'status!="cancelled"'))], '{{task}} failure'],
        ['sum by (task) (%s) / sum by (task) (%s)' % [rate('pgjobs_jobs_finished_total', util.selector(qt, 'status="expired"')), rate('pgjobs_jobs_finished_total', util.selector(qt, 'status!="cancelled"'))], '{{task}} expired'],
      ], [[c.failureRatio, 'red']]), 12],
    ],
    [
      [panel('timeseries', 'Wait time (runnable → started)', 'Percentiles of the time finished jobs waited from runnable to started, final attempt, measured by the database.', 's', quantiles('pgjobs_job_wait_seconds', qt, [0.5, 0.95, 0.99])), 12],
      [panel('timeseries', 'Run time (started → finished)', 'Percentiles of the time finished jobs ran, final attempt.', 's', quantiles('pgjobs_job_run_seconds', qt, [0.5, 0.95, 0.99])), 12],
    ],
    [
      [panel('timeseries', 'Attempts per finished job', 'Average and 99th percentile of the attempts finished jobs made.', 'short', [
        ['sum(%s) / sum(%s)' % [rate('pgjobs_job_attempts_sum', qt), rate('pgjobs_job_attempts_count', qt)], 'average'],
      ] + quantiles('pgjobs_job_attempts', qt, [0.99])), 8],
      [panel('timeseries', 'Expired jobs now', 'Running jobs past their timeout, by task.', 'short', [['sum by (task) (pgjobs_jobs{%s})' % util.selector(qt, 'state="expired"'), '{{task}}']], [[1, 'red']]), 8],
      [panel('table', 'Tasks with most failures', 'The tasks with the most jobs finished as failure or expired over the dashboard time range.', 'short', [['topk(10, sum by (task) (increase(pgjobs_jobs_finished_total{%s}[$__range])))' % util.selector(qt, 'status=~"failure|expired"'), '{{task}}']]), 8],
    ],
    [
      [panel('timeseries', 'Workers', 'Registered workers that beat recently (alive) or stopped beating without unregistering (stale).', 'short', [['sum by (state) (pgjobs_workers{%s})' % q, '{{state}}']]), 8],
      [panel('timeseries', 'Jobs on stale workers', 'Running jobs held by workers that stopped beating; they expire and are retried after their timeout.', 'short', [['sum by (task) (pgjobs_jobs_on_stale_workers{%s})' % qt, '{{task}}']], [[1, 'red']]), 8],
      [panel('timeseries', 'Database reachable', '1 when the exporter reached its database in its last scrape.', 'short', [['min by (%s) (pgjobs_up{%s})' % [by(queueLabels), q], where(queueLabels)]]), 8],
    ],
    [
      [panel('timeseries', 'Collector success', '1 when a collector of the exporter succeeded in the last scrape; the exporter logs the error of a failing one.', 'short', [['min by (collector) (pgjobs_scrape_collector_success{%s})' % q, '{{collector}}']]), 12],
      [panel('timeseries', 'Scrape duration by collector', 'Seconds each collector took in the last scrape.', 's', [['max by (collector) (pgjobs_scrape_collector_duration_seconds{%s})' % q, '{{collector}}']]), 12],
    ],
    [
      [panel('timeseries', 'Dead rows of the queue tables', 'Dead rows waiting for vacuum in jobs.job_queue and jobs.job: they grow while a long transaction holds vacuum back.', 'short', [['sum by (table) (pgjobs_table_dead_tuples{%s})' % q, '{{table}}']], [[c.queueDeadTuples, 'red']]), 8],
      [panel('timeseries', 'Oldest open transaction', 'Age of the oldest open transaction on the database, which holds back vacuum of the queue tables.', 's', [['max by (%s) (pgjobs_oldest_transaction_age_seconds{%s})' % [by(queueLabels), q], where(queueLabels)]], [[c.longTransactionSeconds, 'red']]), 8],
      [panel('timeseries', 'NOTIFY queue usage', 'Fraction of the database NOTIFY queue in use; publishes fail when it is full.', 'percentunit', [['max by (%s) (pgjobs_notification_queue_usage_ratio{%s})' % [by(queueLabels), q], where(queueLabels)]], [[c.notificationQueueRatio, 'red']]), 8],
    ],
    [
      [panel('timeseries', 'Oldest finished job and retention', 'Age of the oldest finished job kept, by status, against how long that status is kept.', 's', [
        ['max by (status) (pgjobs_oldest_finished_job_age_seconds{%s})' % q, 'oldest {{status}}'],
        ['max by (status) (pgjobs_retention_seconds{%s})' % q, 'retention {{status}}'],
      ]), 12],
      [panel('timeseries', 'Pruned jobs', 'Finished jobs deleted past their retention per second, by status.', 'ops', [['sum by (status) (%s)' % rate('pgjobs_jobs_pruned_total', q), '{{status}}']]), 12],
    ],
    [
      [panel('stat', 'Paused tasks', 'Tasks paused with jobs.pause: their jobs wait until jobs.resume.', 'short', [['sum(max by (task) (pgjobs_task_paused{%s})) or vector(0)' % qt, 'paused tasks']], [[1, 'orange']]), 6],
      [panel('table', 'Tasks paused', 'Each task in the queue: 1 when paused.', 'short', [['max by (task) (pgjobs_task_paused{%s})' % qt, '{{task}}']], [[1, 'orange']]), 6],
      [panel('stat', 'Tasks counted as "other"', 'Task names counted under task="other" because the exporter saw more than metrics.max_tasks tasks.', 'short', [['max(pgjobs_tasks_folded_into_other{%s})' % q, 'folded']], [[1, 'orange']]), 6],
      [panel('timeseries', 'Deduplicated publishes', 'Publishes per second that queued nothing because a job of the task held their unique key.', 'ops', [['sum by (task) (%s)' % rate('pgjobs_jobs_deduplicated_total', qt), '{{task}}']]), 6],
    ],
    [
      [panel('table', 'Recurring jobs', 'Each recurring job: when it last queued a job and its next slot.', 'dateTimeAsIso', [
        ['max by (schedule) (pgjobs_schedule_last_enqueued_timestamp_seconds{%s}) * 1000' % q, '{{schedule}}'],
        ['max by (schedule) (pgjobs_schedule_next_run_timestamp_seconds{%s}) * 1000' % q, '{{schedule}}'],
      ]), 12],
      [panel('timeseries', 'Recurring jobs overdue', 'Seconds a recurring job\'s due slot has waited to be queued (alert PgjobsScheduleMissed).', 's', [['clamp_min(time() - max by (schedule) (pgjobs_schedule_next_run_timestamp_seconds{%s}), 0)' % q, '{{schedule}}']], [[c.scheduleOverdueSeconds, 'red']]), 12],
    ],
  ]),

  local workerPanels = layout([
    [
      [panel('stat', 'Jobs per second', 'Results the database confirmed per second, any outcome.', 'ops', [['sum(%s)' % rate('pgjobs_worker_jobs_total', wt), 'jobs']]), 4],
      [panel('stat', 'Failure ratio', 'Share of results that are failures or timeouts.', 'percentunit', [['sum(%s) / sum(%s)' % [rate('pgjobs_worker_jobs_total', util.selector(wt, 'outcome=~"failure|timeout"')), rate('pgjobs_worker_jobs_total', wt)], 'failures']], [[c.failureRatio, 'red']]), 4],
      [panel('stat', 'Timeouts', 'Attempts stopped at their timeout over the dashboard time range (alert PgjobsJobsTimingOut).', 'short', [['sum(increase(pgjobs_worker_job_timeouts_total{%s}[$__range]))' % wt, 'timeouts']], [[1, 'red']]), 4],
      [panel('stat', 'Workers up', 'Worker targets Prometheus scrapes successfully, of those selected.', 'short', [['count(pgjobs_worker_build_info{%s})' % w, 'workers']]), 4],
      [panel('stat', 'Saturation', 'Handler seconds per second over total concurrency: near 100%, jobs wait for a free slot.', 'percentunit', [['sum(%s) / sum(pgjobs_worker_concurrency{%s})' % [rate('pgjobs_worker_busy_seconds_total', w), w], 'busy']], [[0.8, 'orange'], [0.95, 'red']]), 4],
      [panel('stat', 'Workers without database', 'Workers whose last database call failed.', 'short', [['count(pgjobs_worker_database_up{%s} == 0) or vector(0)' % w, 'without database']], [[1, 'red']]), 4],
    ],
    [
      [panel('timeseries', 'Throughput by outcome', 'Jobs finished per second by outcome (success, failure, timeout, cancelled), as the database confirmed them.', 'ops', [['sum by (outcome) (%s)' % rate('pgjobs_worker_jobs_total', wt), '{{outcome}}']]), 12],
      [panel('timeseries', 'Throughput by instance', 'Jobs finished per second by worker.', 'ops', [['sum by (instance) (%s)' % rate('pgjobs_worker_jobs_total', wt), '{{instance}}']]), 12],
    ],
    [
      [panel('timeseries', 'Handler latency', 'Percentiles of handler run time.', 's', quantiles('pgjobs_worker_job_duration_seconds', wt, [0.5, 0.95, 0.99])), 12],
      [panel('heatmap', 'Handler latency heatmap', 'Distribution of handler run time over time.', 's', [['sum by (le) (%s)' % rate('pgjobs_worker_job_duration_seconds_bucket', wt), '{{le}}']]), 12],
    ],
    [
      [panel('timeseries', 'Pickup latency', 'Runnable → started for each attempt, on the database clock.', 's', quantiles('pgjobs_worker_job_wait_seconds', wt, [0.5, 0.99])), 12],
      [panel('timeseries', 'End to end', 'Publish → final outcome, retries included.', 's', quantiles('pgjobs_worker_job_end_to_end_seconds', wt, [0.5, 0.99])), 12],
    ],
    [
      [panel('timeseries', 'Retries, timeouts and dead jobs', 'Per second: attempts retried, attempts stopped at their timeout, jobs whose retries ran out, and results refused because the attempt had been reclaimed.', 'ops', [
        ['sum by (task) (%s)' % rate('pgjobs_worker_job_retries_total', wt), '{{task}} retries'],
        ['sum by (task) (%s)' % rate('pgjobs_worker_job_timeouts_total', wt), '{{task}} timeouts'],
        ['sum by (task) (%s)' % rate('pgjobs_worker_jobs_dead_total', wt), '{{task}} dead'],
        ['sum by (task) (%s)' % rate('pgjobs_worker_late_results_total', wt), '{{task}} late results'],
      ]), 12],
      [panel('timeseries', 'In flight versus concurrency', 'Jobs taken and not finished, against the configured concurrency, per worker.', 'short', [
        ['sum by (instance) (pgjobs_worker_jobs_in_flight{%s})' % wt, '{{instance}} in flight'],
        ['sum by (instance) (pgjobs_worker_concurrency{%s})' % w, '{{instance}} concurrency'],
      ]), 12],
    ],
    [
      [panel('timeseries', 'Saturation by instance', 'Handler seconds per second over concurrency, per worker.', 'percentunit', [['sum by (instance) (%s) / sum by (instance) (pgjobs_worker_concurrency{%s})' % [rate('pgjobs_worker_busy_seconds_total', w), w], '{{instance}}']], [[0.95, 'red']]), 12],
      [panel('timeseries', 'Prefetch', 'Jobs taken ahead of free executors, learned unless pinned.', 'short', [['sum by (instance) (pgjobs_worker_prefetch{%s})' % w, '{{instance}}']]), 12],
    ],
    [
      [panel('timeseries', 'Database errors', 'Failed database calls per second, by call.', 'ops', [['sum by (call) (%s)' % rate('pgjobs_worker_db_errors_total', w), '{{call}}']]), 8],
      [panel('timeseries', 'Database call latency', '99th percentile of database call time, by call.', 's', [['histogram_quantile(0.99, sum by (le, call) (%s))' % rate('pgjobs_worker_db_call_duration_seconds_bucket', w), '{{call}}']]), 8],
      [panel('timeseries', 'Database reachable', '1 when the worker\'s last database call succeeded.', 'short', [['min by (instance) (pgjobs_worker_database_up{%s})' % w, '{{instance}}']]), 8],
    ],
    [
      [panel('timeseries', 'Wake-ups', 'Idle wake-ups per second by source: a NOTIFY or the poll interval.', 'ops', [['sum by (source) (%s)' % rate('pgjobs_worker_wakeups_total', w), '{{source}}']]), 12],
      [panel('timeseries', 'Maintenance steps', 'Maintenance steps run per second by the leader, by step and result.', 'ops', [['sum by (step, result) (%s)' % rate('pgjobs_worker_maintenance_runs_total', w), '{{step}} {{result}}']]), 12],
    ],
  ]),

  grafanaDashboards+:: {
    'pgjobs-queue.json': dashboard(
      'pgjobs-queue', 'pgjobs: queue',
      'The job queue of each database, from jobs-exporter.',
      labelVariables('pgjobs_up', c.exporterSelector, queueLabels) + [
        {
          name: 'task',
          label: 'Task',
          type: 'query',
          datasource: ds,
          query: { query: 'label_values(pgjobs_jobs_published_total{%s}, task)' % q, refId: 'PrometheusVariableQueryEditor-VariableQuery' },
          definition: 'label_values(pgjobs_jobs_published_total{%s}, task)' % q,
          includeAll: true,
          multi: true,
          allValue: '.*',
          current: { selected: true, text: ['All'], value: ['$__all'] },
          refresh: 2,
          sort: 1,
          hide: 0,
          regex: '',
          options: [],
        },
      ],
      queuePanels,
      { uid: 'pgjobs-workers', title: 'pgjobs: workers' },
    ),
    'pgjobs-workers.json': dashboard(
      'pgjobs-workers', 'pgjobs: workers',
      'The workers of each pool, from jobs-worker.',
      labelVariables('pgjobs_worker_build_info', c.workerSelector, workerLabels) + [
        {
          name: 'task',
          label: 'Task',
          type: 'query',
          datasource: ds,
          query: { query: 'label_values(pgjobs_worker_jobs_total{%s}, task)' % w, refId: 'PrometheusVariableQueryEditor-VariableQuery' },
          definition: 'label_values(pgjobs_worker_jobs_total{%s}, task)' % w,
          includeAll: true,
          multi: true,
          allValue: '.*',
          current: { selected: true, text: ['All'], value: ['$__all'] },
          refresh: 2,
          sort: 1,
          hide: 0,
          regex: '',
          options: [],
        },
      ],
      workerPanels,
      { uid: 'pgjobs-queue', title: 'pgjobs: queue' },
    ),
  },
}
