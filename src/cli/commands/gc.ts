import type { Command } from 'commander';
import { loadConfig } from '../../config.js';
import type { CleanupResult } from '../../domain/lifecycle/cleanup.js';
import type { DriftReport, RepairResult } from '../../domain/lifecycle/reconcile.js';
import { recordExit, type CliContext, type Out } from '../context.js';
import { formatBytes } from '../progress.js';

/** `keyframe gc [--dry-run] [--json]`: the reconciliation of store and records, and the retention policy now. */
export function registerGcCommand(program: Command, ctx: CliContext): void {
  program
    .command('gc')
    .usage('[--dry-run] [--json]')
    .summary('apply the retention policy now; reconcile the store with the records')
    .description(
      'Applies the retention policy now (docs/lifecycle.md), then lists objects no record accounts for (orphans older than ' +
        'the upload URL lifetime; younger ones may be uploads in flight and are only counted) and records whose object is ' +
        'gone, with their ages and totals, and deletes those orphans and marks those records deleted. ' +
        '--dry-run only lists, and changes nothing.',
    )
    .option('--dry-run', 'list only; change nothing')
    .option('--json', 'one JSON object')
    .action(
      recordExit(ctx, async (options: { dryRun?: boolean; json?: boolean }) => {
        const config = loadConfig(ctx.env);
        // Loaded when the command runs: other commands need neither the database nor the store.
        const { runGc } = await import('./gc-run.js');
        const dryRun = options.dryRun === true;
        const { report, applied } = await runGc(config, { dryRun });
        if (options.json) ctx.out.stdout(JSON.stringify({ dry_run: dryRun, ...report, ...(applied ? { applied } : {}) }));
        else printOutcome(report, applied, config.uploadUrlTtlSeconds, ctx.out);
        return 0;
      }),
    );
}

function printOutcome(report: DriftReport, applied: { cleanup: CleanupResult[]; repaired: RepairResult } | null, floorSeconds: number, out: Out): void {
  if (applied) {
    const sum = (field: 'resumed' | 'expired' | 'arrived' | 'unused' | 'used' | 'videos') => applied.cleanup.reduce((n, r) => n + r[field], 0);
    if (applied.cleanup.length > 0 && !applied.cleanup[0]!.ran) out.stdout('retention: another cleanup holds the lease; not applied now');
    else {
      out.stdout(
        `retention: ${sum('unused')} unused uploads, ${sum('used')} used references and ${sum('videos')} videos deleted; ` +
          `${sum('expired')} pending uploads expired; ${sum('resumed')} interrupted deletions finished`,
      );
      if (applied.cleanup.some((r) => r.ran) && !applied.cleanup.at(-1)!.complete) out.stdout('retention: more is due than one gc does; run it again');
    }
  }
  out.stdout(`scanned ${report.scanned.objects} objects, ${formatBytes(report.scanned.bytes)}`);
  out.stdout(`orphan objects (no record, older than ${age(floorSeconds)}): ${report.orphanTotals.objects} objects, ${formatBytes(report.orphanTotals.bytes)}`);
  for (const o of report.orphans) out.stdout(`  ${o.key}\t${formatBytes(o.size)}\t${age(o.ageSeconds)} old\t${o.why}`);
  if (report.orphans.length < report.orphanTotals.objects) out.stdout(`  … and ${report.orphanTotals.objects - report.orphans.length} more`);
  if (report.youngOrphans.objects > 0) {
    out.stdout(`left alone: ${report.youngOrphans.objects} younger objects without a record, ${formatBytes(report.youngOrphans.bytes)} (may be uploads in flight)`);
  }
  out.stdout(`records whose object is gone: ${report.missingTotal}`);
  for (const m of report.missing) out.stdout(`  ${m.record} ${m.id}\t${m.state}\t${age(m.ageSeconds)} old`);
  if (report.missing.length < report.missingTotal) out.stdout(`  … and ${report.missingTotal - report.missing.length} more`);
  if (!applied) {
    out.stdout('dry run: nothing changed');
    return;
  }
  out.stdout(`deleted ${applied.repaired.orphansDeleted.objects} orphan objects, ${formatBytes(applied.repaired.orphansDeleted.bytes)}`);
  out.stdout(`marked ${applied.repaired.recordsMarked} records deleted (reason: missing)`);
}

/** An age in the largest unit that keeps it readable. */
function age(seconds: number): string {
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 172_800) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86_400)}d`;
}
