// A throwaway PostgreSQL cluster with PostGIS, for the browser tests that run the server on the
// PostGIS store (a port of tests/common/pg.rs): `initdb` into a temp dir, started on a free port
// on 127.0.0.1, one database (`onemap`) with the postgis extension.
//
// initdb refuses to run as root, so as root every command runs as the `postgres` OS user
// (`runuser -u postgres --`) in a directory it owns. Without the binaries or PostGIS the test is
// skipped (startCluster() resolves to null and says why on stderr), except in CI (CI set and not
// "false"), where it throws: `.ci/run` installs them.
import { spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { freePort } from './net.mjs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const ROOT = '/usr/lib/postgresql';
const inCI = () => Boolean(process.env.CI) && process.env.CI !== 'false';

/** Why the cluster cannot be had: thrown in CI, else said on stderr (null: skip the test). */
function unavailable(why) {
  if (inCI()) {
    throw new Error(`${why}: PostgreSQL 15 and PostGIS are required in CI; .ci/run installs them `
      + '(postgresql-15 postgresql-15-postgis-3)');
  }
  process.stderr.write(`SKIPPED: ${why} (apt-get install postgresql-15 postgresql-15-postgis-3 to run the PostGIS tests)\n`);
  return null;
}

/** The newest /usr/lib/postgresql/<version>/bin that has initdb and pg_ctl. */
function findBin() {
  let entries;
  try { entries = readdirSync(ROOT); } catch { return null; }
  return entries
    .filter((v) => /^\d+$/.test(v))
    .map((v) => ({ v: Number(v), bin: path.join(ROOT, v, 'bin') }))
    .filter(({ bin }) => existsSync(path.join(bin, 'initdb')) && existsSync(path.join(bin, 'pg_ctl')))
    .sort((a, b) => a.v - b.v)
    .pop()?.bin ?? null;
}

function id(...args) {
  const r = spawnSync('id', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const n = Number.parseInt(r.stdout ?? '', 10);
  return r.status === 0 && Number.isInteger(n) ? n : null;
}

/**
 * Starts a cluster. Resolves to { url, port, stop(), restart(), destroy(), log() }, or to null
 * when PostgreSQL or PostGIS is missing outside CI (the caller skips its test).
 *   stop()     fast shutdown: sessions are cut off, as when a database goes down under a
 *              running onemap
 *   restart()  starts the stopped server again on the same port
 *   destroy()  immediate stop and removal of the directory (also done when the process exits)
 */
export async function startCluster() {
  const bin = findBin();
  if (!bin) return unavailable(`PostgreSQL binaries (initdb, pg_ctl) not found under ${ROOT}`);
  const share = spawnSync(path.join(bin, 'pg_config'), ['--sharedir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).stdout?.trim();
  if (!share || !existsSync(path.join(share, 'extension/postgis.control'))) {
    return unavailable(`PostGIS is not installed for PostgreSQL in ${bin}`);
  }
  const asPostgres = id('-u') === 0;
  let owner = null;
  if (asPostgres) {
    owner = [id('-u', 'postgres'), id('-g', 'postgres')];
    if (owner.includes(null)) return unavailable('running as root and there is no `postgres` OS user');
  }

  const dir = mkdtempSync(path.join(tmpdir(), 'onemap-pg-'));
  if (owner) chownSync(dir, owner[0], owner[1]);
  const data = path.join(dir, 'data');
  const logFile = path.join(dir, 'server.log');
  let port = 0;
  let destroyed = false;

  /** Runs a PostgreSQL program (as `postgres` when we are root); returns spawnSync's result. */
  const run = (program, args) => {
    const exe = path.join(bin, program);
    const [cmd, argv] = asPostgres ? ['runuser', ['-u', 'postgres', '--', exe, ...args]] : [exe, args];
    // cwd: the server user may not be able to read our working directory
    const r = spawnSync(cmd, argv, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
    if (r.error) throw new Error(`cannot run ${exe}: ${r.error.message}`);
    return r;
  };
  const log = () => { try { return readFileSync(logFile, 'utf8'); } catch { return ''; } };
  const start = (p) => run('pg_ctl', ['-D', data, '-l', logFile, '-w', '-t', '60', '-o',
    `-p ${p} -c listen_addresses=127.0.0.1 -k ${dir} -c fsync=off -c synchronous_commit=off -c full_page_writes=off`,
    'start']);
  const psql = (db, sql) => {
    const r = run('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', db, '-c', sql]);
    if (r.status !== 0) throw new Error(`psql ${db} -c "${sql}" failed: ${r.stderr}`);
  };

  function destroy() {
    if (destroyed) return;
    destroyed = true;
    process.off('exit', destroy);
    // whatever start/stop said: a postmaster.pid means a server may be running
    if (existsSync(path.join(data, 'postmaster.pid'))) run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
    rmSync(dir, { recursive: true, force: true });
  }
  // pg_ctl leaves a daemon behind: do not let it outlive a test process that ends without `after`
  process.on('exit', destroy);

  try {
    const init = run('initdb', ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync']);
    if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr}`);
    // A free port can be taken between our look and the server's bind: try a few.
    for (let i = 0; i < 5 && !port; i++) {
      const p = await freePort();
      if (start(p).status === 0) port = p;
    }
    if (!port) throw new Error(`pg_ctl start failed:\n${log()}`);
    psql('postgres', 'CREATE DATABASE onemap');
    psql('onemap', 'CREATE EXTENSION postgis');
  } catch (e) {
    destroy();
    throw e;
  }

  return {
    url: `postgres://postgres@127.0.0.1:${port}/onemap`,
    port,
    log,
    stop() {
      const r = run('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']);
      if (r.status !== 0) throw new Error(`pg_ctl stop failed: ${r.stderr}`);
    },
    restart() {
      const r = start(port);
      if (r.status !== 0) throw new Error(`pg_ctl start again (port ${port}) failed: ${r.stderr}\n${log()}`);
    },
    destroy,
  };
}
