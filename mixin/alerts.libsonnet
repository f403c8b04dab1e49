// SPDX-License-Identifier: Apache-2.0
// The alert rules. Queue alerts come from jobs-exporter and keep the labels of the database
// (_config.groupLabels); worker alerts come from jobs-worker and are per pool
// (_config.workerGroupLabels). Every alert has a static summary, a description naming what
// fired and where, a runbook_url into the README's "Runbooks" and a dashboard_url.
local util = import 'util.libsonnet';

{
  local c = self._config,
  local exporter(extra='') = util.selector(c.exporterSelector, extra),
  local worker(extra='') = util.selector(c.workerSelector, extra),
  local by(labels) = std.join(', ', labels),
  local g = by(c.groupLabels),
  local wg = by(c.workerGroupLabels),
  // Labels of a scrape target: those of the database plus job and instance.
  // The labels of a scrape target: those given, then job and instance if missing.
  local targetLabels(labels) = labels + [l for l in ['job', 'instance'] if !std.member(labels, l)],
  local target = by(targetLabels(c.groupLabels)),
  local workerTarget = by(targetLabels(c.workerGroupLabels)),
  local where(labels) = std.join('/', ['{{ $labels.%s }}' % l for l in labels]),
  local database = where(c.groupLabels),
  local pool = where(c.workerGroupLabels),

  local alert(name, expr, forDuration, severity, summary, description, dashboard) = {
    alert: name,
    // An empty selector leaves 'name{}': valid PromQL, but noise to a reader.
    expr: std.strReplace(expr, '{}', ''),
    'for': forDuration,
    labels: { severity: severity },
    annotations: {
      summary: summary,
      description: description,
      runbook_url: c.runbookUrlBase + '#' + std.asciiLower(name),
      dashboard_url: c.grafanaUrl + '/d/' + dashboard,
    },
  },

  prometheusAlerts+:: {
    groups+: [
      {
        name: 'pgjobs-queue',
        rules: [
          alert(
            'PgjobsJobsExpiring',
            'sum by (%s, task) (pgjobs_jobs{%s}) > 0' % [g, exporter('state="expired"')],
            '2m', 'warning',
            'Jobs are running past their timeout.',
            '{{ $value }} running job(s) of task {{ $labels.task }} on %s exceeded their timeout and wait to be reclaimed: a handler hangs or its worker died.' % database,
            'pgjobs-queue',
          ),
          alert(
            'PgjobsOldestReadyJobTooOld',
            'max by (%s, task) (pgjobs_oldest_ready_job_age_seconds{%s}) > %d' % [g, exporter(), c.oldestReadyJobSeconds],
            '5m', 'warning',
            'Runnable jobs wait too long to start.',
            'The oldest runnable job of task {{ $labels.task }} on %s has waited {{ $value | humanizeDuration }}: no worker takes this task, or the workers cannot keep up.' % database,
            'pgjobs-queue',
          ),
          alert(
            'PgjobsBacklogGrowing',
            |||
              sum by (%(g)s, task) (pgjobs_jobs{%(ready)s}) > %(min)d
                and sum by (%(g)s, task) (deriv(pgjobs_jobs{%(ready)s}[10m])) > 0
            ||| % { g: g, ready: exporter('state="ready"'), min: c.backlogMinimum },
            '15m', 'warning',
            'A backlog keeps growing.',
            'Runnable jobs of task {{ $labels.task }} on %s have grown for 15 minutes and number {{ $value }}: jobs are published faster than they finish.' % database,
            'pgjobs-queue',
          ),
          alert(
            'PgjobsHighFailureRatio',
            |||
              sum by (%(g)s, task) (rate(pgjobs_jobs_finished_total{%(bad)s}[10m]))
                / sum by (%(g)s, task) (rate(pgjobs_jobs_finished_total{%(all)s}[10m])) > %(ratio)g
            ||| % { g: g, bad: exporter('status=~"failure|expired"'), all: exporter('status!="cancelled"'), ratio: c.failureRatio },
            '10m', 'warning',
            'Too many jobs fail for good.',
            '{{ $value | humanizePercentage }} of the jobs of task {{ $labels.task }} on %s finished as failure or expired over 10 minutes; their tracebacks are in jobs.job.' % database,
            'pgjobs-queue',
          ),
          alert(
            'PgjobsJobsOnStaleWorkers',
            'sum by (%s, task) (pgjobs_jobs_on_stale_workers{%s}) > 0' % [g, exporter()],
            '2m', 'warning',
            'Running jobs are held by workers that stopped beating.',
            '{{ $value }} running job(s) of task {{ $labels.task }} on %s belong to a worker that stopped heartbeating without unregistering; they expire and are retried after their timeout.' % database,
            'pgjobs-queue',
          ),
          alert(
            'PgjobsDatabaseUnreachable',
            'min by (%s) (pgjobs_up{%s}) == 0' % [g, exporter()],
            '1m', 'critical',
            'The exporter cannot reach the queue database.',
            'jobs-exporter %s answers, but its database does not: workers cannot consume either.' % database,
            'pgjobs-queue',
          ),
          alert(
            'PgjobsCollectorFailing',
            |||
              min by (%(g)s, collector) (pgjobs_scrape_collector_success{%(sel)s}) == 0
                unless on (%(g)s) (min by (%(g)s) (pgjobs_up{%(sel)s}) == 0)
            ||| % { g: g, sel: exporter() },
            '10m', 'warning',
            'A collector of the exporter fails.',
            'Collector {{ $labels.collector }} of jobs-exporter %s has failed for 10 minutes while its database answers: its metrics are missing. The exporter logs the error ("collector failed").' % database,
            'pgjobs-queue',
          ),
          alert(
            'PgjobsScheduleMissed',
            'time() - max by (%s, schedule) (pgjobs_schedule_next_run_timestamp_seconds{%s}) > %d' % [g, exporter(), c.scheduleOverdueSeconds],
            '1m', 'warning',
            'A recurring job did not queue its slot.',
            'The slot of recurring job {{ $labels.schedule }} on %s was due {{ $value | humanizeDuration }} ago and nothing queued it: no worker with maintenance enabled is running, or its maintenance fails.' % database,
            'pgjobs-queue',
          ),
          alert(
            'PgjobsNotifyQueueFilling',
            'max by (%s) (pgjobs_notification_queue_usage_ratio{%s}) > %g' % [g, exporter(), c.notificationQueueRatio],
            '5m', 'warning',
            'The database NOTIFY queue is filling up.',
            'The NOTIFY queue of %s is {{ $value | humanizePercentage }} full: a session that LISTENs does not read its notifications. When it is full, publishes fail.' % database,
            'pgjobs-queue',
          ),
          alert(
            'PgjobsLongTransaction',
            'max by (%s) (pgjobs_oldest_transaction_age_seconds{%s}) > %d' % [g, exporter(), c.longTransactionSeconds],
            '5m', 'warning',
            'A long transaction holds back vacuum of the queue.',
            'The oldest open transaction on %s has run for {{ $value | humanizeDuration }}: vacuum cannot remove the dead rows of consumed jobs meanwhile, and consume slows down as they pile up.' % database,
            'pgjobs-queue',
          ),
          alert(
            'PgjobsQueueDeadTuples',
            'max by (%s, table) (pgjobs_table_dead_tuples{%s}) > %d' % [g, exporter('table="job_queue"'), c.queueDeadTuples],
            '15m', 'warning',
            'Dead rows pile up in the queue table.',
            'jobs.{{ $labels.table }} on %s holds {{ $value }} dead rows that vacuum has not removed: a long transaction or a replication slot holds them back, or autovacuum cannot keep up.' % database,
            'pgjobs-queue',
          ),
          alert(
            'PgjobsTasksFoldedIntoOther',
            'max by (%s) (pgjobs_tasks_folded_into_other{%s}) > 0' % [g, exporter()],
            '15m', 'info',
            'Task names beyond the exporter limit are counted as "other".',
            '{{ $value }} task name(s) on %s are counted under task="other" because the exporter saw more than metrics.max_tasks tasks: their alerts and panels are merged.' % database,
            'pgjobs-queue',
          ),
          alert(
            'PgjobsExporterDown',
            |||
              up == 0 and on (%(t)s) group by (%(t)s) (present_over_time(pgjobs_exporter_build_info{%(sel)s}[1h]))
            ||| % { t: target, sel: exporter() },
            '2m', 'critical',
            'An exporter that served pgjobs metrics is down.',
            'Prometheus cannot scrape jobs-exporter %s, which served metrics within the last hour: its database is not monitored.' % where(targetLabels(c.groupLabels)),
            'pgjobs-queue',
          ),
          alert(
            'PgjobsExporterAbsent',
            'absent(pgjobs_exporter_build_info{%s})' % exporter(),
            '15m', 'critical',
            'No pgjobs exporter is scraped.',
            'Prometheus has no jobs-exporter target: the queue is not monitored. It was deleted, or its service discovery changed.',
            'pgjobs-queue',
          ),
        ],
      },
      {
        name: 'pgjobs-workers',
        rules: [
          alert(
            'PgjobsJobsTimingOut',
            'sum by (%s, task) (increase(pgjobs_worker_job_timeouts_total{%s}[10m])) > 0' % [wg, worker()],
            '1m', 'warning',
            'Workers stop jobs at their timeout.',
            '{{ $value | humanize }} attempt(s) of task {{ $labels.task }} in pool %s ran past their timeout in the last 10 minutes and were stopped.' % pool,
            'pgjobs-workers',
          ),
          alert(
            'PgjobsRetriesSpiking',
            'sum by (%s, task) (rate(pgjobs_worker_job_retries_total{%s}[5m])) > %g' % [wg, worker(), c.retriesPerSecond],
            '10m', 'info',
            'Jobs are retried often.',
            'Attempts of task {{ $labels.task }} in pool %s fail and go back to the queue at {{ $value | humanize }} per second: a dependency of the handler may be failing.' % pool,
            'pgjobs-workers',
          ),
          alert(
            'PgjobsWorkerDatabaseDown',
            'min by (%s) (pgjobs_worker_database_up{%s}) == 0' % [workerTarget, worker()],
            '1m', 'critical',
            'A worker lost its database.',
            'jobs-worker %s cannot reach PostgreSQL and runs no jobs.' % where(targetLabels(c.workerGroupLabels)),
            'pgjobs-workers',
          ),
        ] + (if c.workerDownAlerts then [
               alert(
                 'PgjobsWorkerDown',
                 |||
                   count by (%(wg)s) (up == 0 and on (%(t)s) group by (%(t)s) (present_over_time(pgjobs_worker_build_info{%(sel)s}[1h])))
                     / count by (%(wg)s) (up and on (%(t)s) group by (%(t)s) (present_over_time(pgjobs_worker_build_info{%(sel)s}[1h])))
                     > %(ratio)g
                 ||| % { wg: wg, t: workerTarget, sel: worker(), ratio: c.workerDownRatio },
                 c.workerDownFor, 'warning',
                 'Workers of a pool are down.',
                 '{{ $value | humanizePercentage }} of the workers of pool %s that served metrics within the last hour cannot be scraped; their jobs are retried after their timeout.' % pool,
                 'pgjobs-workers',
               ),
             ] else []),
      },
    ],
  },
}
