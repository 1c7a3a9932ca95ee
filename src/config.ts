import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Keyframe's whole configuration. It is read from the environment once, by
 * `loadConfig`, at start-up, and then passed to whatever needs it: no module
 * reads `process.env` on its own.
 */
export interface Config {
  /**
   * What this process runs (`KEYFRAME_ROLE`, or `keyframe serve --role`, or `keyframe worker`):
   * `all` (default, the embedded install: the HTTP API and the generation worker in one process),
   * `api` (the HTTP API only: it queues generations and never starts one) or `worker` (jobs only, no
   * HTTP port). The split roles are for several processes on one database and an S3 store.
   */
  role: Role;
  /**
   * Seconds an orderly shutdown (SIGTERM, SIGINT) may take before the process exits at once, non-zero
   * (`KEYFRAME_SHUTDOWN_TIMEOUT_SECONDS`, default 30, 1 to 3600).
   */
  shutdownTimeoutSeconds: number;
  /** Interface the HTTP server binds to (`HOST`, default 127.0.0.1). */
  host: string;
  /** TCP port (`PORT`, default 3000; 0 picks a free port). */
  port: number;
  /**
   * Holds the SQLite database (unless `database.url` names PostgreSQL), the disk object store,
   * the signing secret and scratch files (`KEYFRAME_DATA_DIR`, default ./data).
   */
  dataDir: string;
  /** Where the metadata lives (see DatabaseConfig): PostgreSQL when a URL is set, else SQLite in the data dir. */
  database: DatabaseConfig;
  /**
   * Redis, for a cluster (see RedisConfig): the generation queue on BullMQ and the presign rate
   * limit's and upload quota's shared counters. Null (the default): the database queue and
   * in-process counters.
   */
  redis: RedisConfig | null;
  /**
   * Base URL that clients reach this server at (`KEYFRAME_PUBLIC_URL`); upload URLs of
   * the disk store point here. Default: http://HOST:PORT (resolved after listen when PORT=0).
   */
  publicUrl: string | null;
  /** Lifetime of a presigned upload URL in seconds (`KEYFRAME_UPLOAD_URL_TTL_SECONDS`, default 900). */
  uploadUrlTtlSeconds: number;
  /**
   * Minutes between two sweeps of expired multipart uploads (`KEYFRAME_MULTIPART_SWEEP_MINUTES`,
   * default 10), where jobs run (worker role, embedded `serve`).
   */
  multipartSweepMinutes: number;
  /**
   * Browser origins allowed to call the API and PUT to upload URLs
   * (`KEYFRAME_CORS_ORIGINS`, comma-separated, `*` for any; default none).
   */
  corsOrigins: string[];
  /**
   * Secret that signs the disk store's upload URLs (`KEYFRAME_SIGNING_SECRET`, at least 32
   * characters). Default: a random one generated on first start and kept in the data dir.
   */
  signingSecret: string | null;
  /** pino log level (`LOG_LEVEL`, default info). */
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Where objects live (`KEYFRAME_STORAGE`): `disk` (default, embedded) or `s3`. */
  storage: 'disk' | 's3';
  /** S3 settings; required when storage is `s3`. */
  s3: S3Config | null;
  /** Generation models and runners (see GenerationConfig). */
  generation: GenerationConfig;
  /** Per-user quotas and rate limits, and the server's caps on concurrent uploads (see LimitsConfig). */
  limits: LimitsConfig;
  /** What people and operators reach besides the API (issue 14). */
  surfaces: SurfacesConfig;
  /** How long uploads and videos are kept, and the cleanup job that applies it (issue 15, docs/lifecycle.md). */
  retention: RetentionConfig;
}

/**
 * The retention policy and its cleanup job (src/domain/lifecycle/). Durations are
 * written `<n>s`, `<n>m`, `<n>h` or `<n>d`; held here in seconds.
 */
export interface RetentionConfig {
  /**
   * An upload no generation ever named is deleted this long after it arrived
   * (`KEYFRAME_RETAIN_UNUSED`, default 7d; `forever`: never).
   */
  unusedSeconds: number | null;
  /**
   * A reference generations used is deleted this long after the last of them settled
   * (`KEYFRAME_RETAIN_USED`). Unset (default): as long as their videos, so kept forever
   * while videos are.
   */
  usedSeconds: number | null;
  /** A completed generation's video is deleted this long after it completed (`KEYFRAME_RETAIN_VIDEOS`; unset or `forever`, the default: never). */
  videosSeconds: number | null;
  /** Seconds between two cleanup runs (`KEYFRAME_CLEANUP_INTERVAL`, default 10m), where jobs run. */
  cleanupIntervalSeconds: number;
  /** Rows one step of a run reads at once (`KEYFRAME_CLEANUP_BATCH`, default 100, 1 to 10000). */
  cleanupBatch: number;
  /** Seconds one run may work before it stops and leaves the rest to the next (`KEYFRAME_CLEANUP_BUDGET`, default 30s). */
  cleanupBudgetSeconds: number;
}

/** The browser console, the API reference and the metrics endpoint. */
export interface SurfacesConfig {
  /** Serve the browser console at /console (`KEYFRAME_CONSOLE`, default true). */
  console: boolean;
  /** Serve the API reference at /docs (`KEYFRAME_DOCS`, default true); /openapi.json is always served. */
  docs: boolean;
  /**
   * Bearer token that GET /metrics on the API port requires (`KEYFRAME_METRICS_TOKEN`, at least
   * 16 characters); without it the API port has no /metrics.
   */
  metricsToken: string | null;
  /**
   * `host:port` of a listener that serves only GET /metrics, without a token
   * (`KEYFRAME_METRICS_LISTEN`, e.g. 127.0.0.1:9464; default none). Every role opens it, the
   * worker included; bind it to an address only the scraper reaches.
   */
  metricsListen: { host: string; port: number } | null;
}

export const ROLES = ['all', 'api', 'worker'] as const;
export type Role = (typeof ROLES)[number];

/** The metadata database; the CLI reads the same settings as the server. */
export interface DatabaseConfig {
  /**
   * PostgreSQL connection URL (`KEYFRAME_DATABASE_URL`, `postgres://user:password@host:5432/db`
   * or `postgresql://…`). Unset: the embedded SQLite file `keyframe.sqlite` in the data dir.
   * The password is never printed, in errors or logs.
   */
  url: string | null;
  /** Connections in the PostgreSQL pool of this process (`KEYFRAME_DATABASE_POOL_SIZE`, default 10, 1 to 100). */
  poolSize: number;
}

/** A Redis that every node of a cluster shares (`KEYFRAME_REDIS_URL`). */
export interface RedisConfig {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…` (TLS). The password is never printed. */
  url: string;
  /**
   * Prefix of every key Keyframe writes (`KEYFRAME_REDIS_PREFIX`, default `keyframe`): several
   * installations (or test runs) can share one Redis without seeing each other's queues or counters.
   */
  prefix: string;
}

/**
 * What one user (all of their keys together) may use, and what the server
 * takes at once. A request past a user limit gets 429 `rate_limited` with
 * `Retry-After`; an upload past a concurrency cap gets S3's 503 `SlowDown`.
 * docs/security.md says why each default is what it is.
 */
export interface LimitsConfig {
  /** Presigns one user may make per minute (`KEYFRAME_PRESIGNS_PER_MINUTE`, default 600). */
  presignsPerMinute: number;
  /** Upload URLs of one user that are live and not yet used (`KEYFRAME_MAX_PENDING_UPLOADS`, default 100). */
  pendingUploads: number;
  /**
   * Bytes one user may hold in the store (`KEYFRAME_MAX_STORED_BYTES`, default 10 GiB): stored
   * uploads count their size, live pending ones their signed length or `max_bytes`.
   */
  storedBytes: number;
  /** Generations one user may create per hour (`KEYFRAME_GENERATIONS_PER_HOUR`, default 200). */
  generationsPerHour: number;
  /** Generations of one user queued or running at once (`KEYFRAME_MAX_ACTIVE_GENERATIONS`, default 20). */
  activeGenerations: number;
  /** PUTs to the disk store in progress at once for one user (`KEYFRAME_MAX_UPLOADS_PER_USER`, default 8). */
  concurrentUploadsPerUser: number;
  /** PUTs to the disk store in progress at once on this server (`KEYFRAME_MAX_UPLOADS`, default 64). */
  concurrentUploads: number;
}

/** How generations run; docs/generations.md describes the model registry file. */
export interface GenerationConfig {
  /** The model registry JSON file (`KEYFRAME_MODELS_FILE`, default: config/models.json shipped with Keyframe). */
  modelsFile: string;
  /** Jobs one server runs at once (`KEYFRAME_GENERATION_CONCURRENCY`, default 1). */
  concurrency: number;
  /** Time limit of one job in seconds (`KEYFRAME_GENERATION_TIMEOUT_SECONDS`, default 600); then it fails "Generation timed out". */
  timeoutSeconds: number;
  /** Starts of one job before a restart gives up on it (`KEYFRAME_GENERATION_MAX_ATTEMPTS`, default 2). */
  maxAttempts: number;
  /**
   * Lease of a running job in seconds (`KEYFRAME_GENERATION_LEASE_SECONDS`, default 30): renewed every
   * third of it while the job runs; a job whose worker died is taken up by another (or by the restarted
   * process) once its lease lapsed, about a lease and a third after the last renewal.
   */
  leaseSeconds: number;
  /** `KEYFRAME_WEBHOOK_ALLOW_PRIVATE=true` lets webhooks reach loopback/private addresses (default false: SSRF guard). */
  webhookAllowPrivate: boolean;
}

/** The model registry shipped with Keyframe: `config/models.json` at the package root (from src/ and dist/ alike). */
const DEFAULT_MODELS_FILE = fileURLToPath(new URL('../config/models.json', import.meta.url));

export interface S3Config {
  /** `S3_ENDPOINT`, e.g. http://127.0.0.1:7480; unset means AWS S3 itself. */
  endpoint: string | null;
  /** `S3_REGION`, default us-east-1. */
  region: string;
  /** `S3_BUCKET`, required. */
  bucket: string;
  /** `S3_ACCESS_KEY_ID`, required. */
  accessKeyId: string;
  /** `S3_SECRET_ACCESS_KEY`, required. */
  secretAccessKey: string;
  /** `S3_FORCE_PATH_STYLE` (true for Ceph RGW and MinIO; default true when an endpoint is set). */
  forcePathStyle: boolean;
  /** `S3_CREATE_BUCKET=true`: create the bucket at start-up when it is missing. */
  createBucket: boolean;
  /** `S3_APPLY_CORS=true`: put a CORS rule for `corsOrigins` on the bucket at start-up. */
  applyCors: boolean;
  /**
   * `S3_APPLY_LIFECYCLE=true`: put a lifecycle rule on the bucket at start-up that aborts
   * incomplete multipart uploads after the multipart lifetime (in whole days, at least 1):
   * a backstop for parts the sweep missed. It replaces the bucket's lifecycle configuration.
   */
  applyLifecycle: boolean;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration: ${problems.join('; ')}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

/** Reads and validates the configuration; throws a ConfigError listing every bad value. */
export function loadConfig(env: Env = process.env): Config {
  const problems: string[] = [];
  const read = new EnvReader(env, problems);

  const host = read.string('HOST', '127.0.0.1');
  const port = read.integer('PORT', 3000, 0, 65535);
  const publicUrl = read.url('KEYFRAME_PUBLIC_URL');
  const storage = read.oneOf('KEYFRAME_STORAGE', ['disk', 's3'] as const, 'disk');
  const signingSecret = read.optionalString('KEYFRAME_SIGNING_SECRET');
  if (signingSecret !== null && signingSecret.length < 32) {
    problems.push('KEYFRAME_SIGNING_SECRET must be at least 32 characters');
  }

  const role = read.oneOf('KEYFRAME_ROLE', ROLES, 'all');
  const databaseUrl = read.postgresUrl('KEYFRAME_DATABASE_URL');
  const redisUrl = read.redisUrl('KEYFRAME_REDIS_URL');
  const redisPrefix = read.string('KEYFRAME_REDIS_PREFIX', 'keyframe');
  if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(redisPrefix)) problems.push('KEYFRAME_REDIS_PREFIX must be 1 to 64 letters, digits or _ . : -');
  if (role !== 'all') multiNodeProblems(role, { storage, databaseUrl, signingSecret, publicUrl }, problems);

  const config: Config = {
    role,
    shutdownTimeoutSeconds: read.integer('KEYFRAME_SHUTDOWN_TIMEOUT_SECONDS', 30, 1, 3600),
    host,
    port,
    dataDir: path.resolve(read.string('KEYFRAME_DATA_DIR', './data')),
    database: {
      url: databaseUrl,
      poolSize: read.integer('KEYFRAME_DATABASE_POOL_SIZE', 10, 1, 100),
    },
    redis: redisUrl === null ? null : { url: redisUrl, prefix: redisPrefix },
    publicUrl: publicUrl === null ? null : publicUrl.replace(/\/+$/, ''),
    uploadUrlTtlSeconds: read.integer('KEYFRAME_UPLOAD_URL_TTL_SECONDS', 900, 1, 7 * 24 * 3600),
    multipartSweepMinutes: read.integer('KEYFRAME_MULTIPART_SWEEP_MINUTES', 10, 1, 24 * 60),
    corsOrigins: read.list('KEYFRAME_CORS_ORIGINS'),
    signingSecret,
    logLevel: read.oneOf('LOG_LEVEL', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const, 'info'),
    storage,
    s3: storage === 's3' ? readS3(read) : null,
    generation: {
      modelsFile: path.resolve(read.string('KEYFRAME_MODELS_FILE', DEFAULT_MODELS_FILE)),
      concurrency: read.integer('KEYFRAME_GENERATION_CONCURRENCY', 1, 1, 64),
      timeoutSeconds: read.integer('KEYFRAME_GENERATION_TIMEOUT_SECONDS', 600, 1, 24 * 3600),
      maxAttempts: read.integer('KEYFRAME_GENERATION_MAX_ATTEMPTS', 2, 1, 10),
      leaseSeconds: read.integer('KEYFRAME_GENERATION_LEASE_SECONDS', 30, 3, 3600),
      webhookAllowPrivate: read.boolean('KEYFRAME_WEBHOOK_ALLOW_PRIVATE', false),
    },
    surfaces: readSurfaces(read, problems),
    retention: {
      unusedSeconds: read.duration('KEYFRAME_RETAIN_UNUSED', 7 * DAY_SECONDS, { forever: true }),
      usedSeconds: read.duration('KEYFRAME_RETAIN_USED', null),
      videosSeconds: read.duration('KEYFRAME_RETAIN_VIDEOS', null, { forever: true }),
      cleanupIntervalSeconds: read.duration('KEYFRAME_CLEANUP_INTERVAL', 600, { max: DAY_SECONDS }) ?? 600,
      cleanupBatch: read.integer('KEYFRAME_CLEANUP_BATCH', 100, 1, 10_000),
      cleanupBudgetSeconds: read.duration('KEYFRAME_CLEANUP_BUDGET', 30, { max: 3600 }) ?? 30,
    },
    limits: {
      presignsPerMinute: read.integer('KEYFRAME_PRESIGNS_PER_MINUTE', 600, 1, 1_000_000),
      pendingUploads: read.integer('KEYFRAME_MAX_PENDING_UPLOADS', 100, 1, 1_000_000),
      storedBytes: read.integer('KEYFRAME_MAX_STORED_BYTES', 10 * 2 ** 30, 1, Number.MAX_SAFE_INTEGER),
      generationsPerHour: read.integer('KEYFRAME_GENERATIONS_PER_HOUR', 200, 1, 1_000_000),
      activeGenerations: read.integer('KEYFRAME_MAX_ACTIVE_GENERATIONS', 20, 1, 100_000),
      concurrentUploadsPerUser: read.integer('KEYFRAME_MAX_UPLOADS_PER_USER', 8, 1, 10_000),
      concurrentUploads: read.integer('KEYFRAME_MAX_UPLOADS', 64, 1, 100_000),
    },
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/**
 * What a split role (`api`, `worker`) needs that the embedded default does not, since other
 * processes share its records and its objects:
 * - a store every node reaches: the disk store lives in one process's data dir, so it is refused;
 * - on PostgreSQL (several machines on one database) the same signing secret and public URL on
 *   every node: a per-data-dir secret would make each node sign differently, and a default
 *   `http://HOST:PORT` names each node instead of the address clients and model workers reach.
 */
function multiNodeProblems(
  role: Exclude<Role, 'all'>,
  settings: { storage: 'disk' | 's3'; databaseUrl: string | null; signingSecret: string | null; publicUrl: string | null },
  problems: string[],
): void {
  if (settings.storage === 'disk') {
    problems.push(
      `KEYFRAME_ROLE=${role} needs KEYFRAME_STORAGE=s3: the disk store is single-node (its objects live in one process's data dir); ` +
        'run `keyframe serve` (API and worker in one process) on the disk store',
    );
  }
  if (settings.databaseUrl !== null) {
    const missing = [settings.signingSecret === null && 'KEYFRAME_SIGNING_SECRET', settings.publicUrl === null && 'KEYFRAME_PUBLIC_URL'].filter(
      (name): name is string => typeof name === 'string',
    );
    if (missing.length > 0) {
      problems.push(
        `KEYFRAME_ROLE=${role} with KEYFRAME_DATABASE_URL requires ${missing.join(' and ')}: ` +
          'every node of a cluster must sign alike and name the one URL clients and model workers reach',
      );
    }
  }
}

function readSurfaces(read: EnvReader, problems: string[]): SurfacesConfig {
  const metricsToken = read.optionalString('KEYFRAME_METRICS_TOKEN');
  if (metricsToken !== null && metricsToken.length < 16) problems.push('KEYFRAME_METRICS_TOKEN must be at least 16 characters');
  const listen = read.optionalString('KEYFRAME_METRICS_LISTEN');
  let metricsListen: SurfacesConfig['metricsListen'] = null;
  if (listen !== null) {
    // host:port, the host possibly a bracketed IPv6 address ([::1]:9464).
    const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):([0-9]{1,5})$/.exec(listen);
    const port = match ? Number(match[3]) : NaN;
    if (!match || port < 1 || port > 65535) problems.push('KEYFRAME_METRICS_LISTEN must be host:port, e.g. 127.0.0.1:9464 or [::1]:9464');
    else metricsListen = { host: match[1] ?? match[2]!, port };
  }
  return {
    console: read.boolean('KEYFRAME_CONSOLE', true),
    docs: read.boolean('KEYFRAME_DOCS', true),
    metricsToken,
    metricsListen,
  };
}

function readS3(read: EnvReader): S3Config {
  const endpoint = read.url('S3_ENDPOINT');
  return {
    endpoint,
    region: read.string('S3_REGION', 'us-east-1'),
    bucket: read.required('S3_BUCKET'),
    accessKeyId: read.required('S3_ACCESS_KEY_ID'),
    secretAccessKey: read.required('S3_SECRET_ACCESS_KEY'),
    forcePathStyle: read.boolean('S3_FORCE_PATH_STYLE', endpoint !== null),
    createBucket: read.boolean('S3_CREATE_BUCKET', false),
    applyCors: read.boolean('S3_APPLY_CORS', false),
    applyLifecycle: read.boolean('S3_APPLY_LIFECYCLE', false),
  };
}

const DAY_SECONDS = 24 * 3600;

/** Seconds in one unit of a duration setting. */
const DURATION_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: DAY_SECONDS };

/** Parses one variable at a time, recording a readable problem for each bad value. */
class EnvReader {
  constructor(
    private readonly env: Env,
    private readonly problems: string[],
  ) {}

  private raw(name: string): string | undefined {
    const value = this.env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  }

  string(name: string, fallback: string): string {
    return this.raw(name) ?? fallback;
  }

  optionalString(name: string): string | null {
    return this.raw(name) ?? null;
  }

  required(name: string): string {
    const value = this.raw(name);
    if (value === undefined) this.problems.push(`${name} is required`);
    return value ?? '';
  }

  integer(name: string, fallback: number, min: number, max: number): number {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const n = Number(value);
    if (!/^\d+$/.test(value) || n < min || n > max) {
      this.problems.push(`${name} must be an integer from ${min} to ${max}, got "${value}"`);
      return fallback;
    }
    return n;
  }

  /**
   * A duration `<n>s|m|h|d` (n a whole number, at least 1), in seconds, at most `max`
   * (default ten years). With `forever`, the word `forever` is null: no limit.
   */
  duration(name: string, fallback: number | null, options: { forever?: boolean; max?: number } = {}): number | null {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    if (options.forever && value.toLowerCase() === 'forever') return null;
    const match = /^(\d+)([smhd])$/.exec(value);
    const seconds = match ? Number(match[1]) * DURATION_UNITS[match[2]!]! : NaN;
    const max = options.max ?? 3650 * DAY_SECONDS;
    if (!(seconds >= 1 && seconds <= max)) {
      this.problems.push(`${name} must be a duration such as 90s, 10m, 12h or 7d (at most ${max} s${options.forever ? ', or forever' : ''}), got "${value}"`);
      return fallback;
    }
    return seconds;
  }

  boolean(name: string, fallback: boolean): boolean {
    const value = this.raw(name)?.toLowerCase();
    if (value === undefined) return fallback;
    if (['true', '1', 'yes'].includes(value)) return true;
    if (['false', '0', 'no'].includes(value)) return false;
    this.problems.push(`${name} must be true or false, got "${value}"`);
    return fallback;
  }

  oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    if ((allowed as readonly string[]).includes(value)) return value as T;
    this.problems.push(`${name} must be one of ${allowed.join(', ')}, got "${value}"`);
    return fallback;
  }

  url(name: string): string | null {
    const value = this.raw(name);
    if (value === undefined) return null;
    try {
      const url = new URL(value);
      if (url.protocol === 'http:' || url.protocol === 'https:') return value;
    } catch {
      // reported below
    }
    this.problems.push(`${name} must be an http(s) URL, got "${value}"`);
    return null;
  }

  /** A postgres:// URL; a bad one is reported without its value, which may hold a password. */
  postgresUrl(name: string): string | null {
    const value = this.raw(name);
    if (value === undefined) return null;
    let ok = false;
    try {
      const url = new URL(value);
      ok = (url.protocol === 'postgres:' || url.protocol === 'postgresql:') && (url.hostname !== '' || url.searchParams.has('host'));
    } catch {
      // reported below
    }
    if (!ok) this.problems.push(`${name} must be a postgres:// or postgresql:// URL with a host (value not shown: it may hold a password)`);
    return ok ? value : null;
  }

  /** A redis:// or rediss:// URL; a bad one is reported without its value, which may hold a password. */
  redisUrl(name: string): string | null {
    const value = this.raw(name);
    if (value === undefined) return null;
    let ok = false;
    try {
      const url = new URL(value);
      ok = (url.protocol === 'redis:' || url.protocol === 'rediss:') && url.hostname !== '' && /^\/?\d*$/.test(url.pathname);
    } catch {
      // reported below
    }
    if (!ok) this.problems.push(`${name} must be a redis:// or rediss:// URL with a host and at most a database number (value not shown: it may hold a password)`);
    return ok ? value : null;
  }

  list(name: string): string[] {
    const value = this.raw(name);
    if (value === undefined) return [];
    return value
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
  }
}
