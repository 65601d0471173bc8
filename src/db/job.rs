//! The processing job queue. A job is claimed with a lease; a worker that dies leaves its lease
//! to expire and the job is claimed again. On PostgreSQL the claim skips rows other origins
//! hold (`FOR UPDATE SKIP LOCKED`); SQLite has one writer, so its claim is atomic as it is.
//! Every later write about a claim is fenced by its attempt number: a worker whose lease ran
//! out (a pause, a partition) can neither extend nor close the claim of the worker that took
//! the job over.

use super::{Backend, Db, DbError, Op};
use sqlx::{Any, Row, Transaction};

/// A claimed job.
#[derive(Debug, Clone)]
pub struct Job {
    /// The job.
    pub id: String,
    /// Its upload.
    pub upload_id: String,
    /// This claim's attempt number, from 1.
    pub attempt: i64,
}

/// Queues the processing of an upload, inside the transaction that marks it stored.
pub(super) async fn enqueue(
    tx: &mut Transaction<'_, Any>,
    upload_id: &str,
    now: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO jobs (id, upload_id, state, attempts, created_at, updated_at) VALUES ($1, $2, 'queued', 0, $3, $3)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(upload_id)
    .bind(now)
    .execute(&mut **tx)
    .await
    .op("queue a job")?;
    Ok(())
}

/// Claims the oldest job that is queued or whose lease has run out, for `lease_ms`.
///
/// # Errors
/// The statement fails.
pub async fn claim(db: &Db, worker: &str, lease_ms: i64, now: i64) -> Result<Option<Job>, DbError> {
    let lock = match db.backend() {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let row = sqlx::query(&format!(
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_until = $1, worker = $2, updated_at = $3, progress = 0 \
         WHERE id = (SELECT id FROM jobs WHERE state = 'queued' OR (state = 'running' AND lease_until < $3) \
                     ORDER BY created_at LIMIT 1{lock}) \
         RETURNING id, upload_id, attempts"
    ))
    .bind(now + lease_ms)
    .bind(worker)
    .bind(now)
    .fetch_optional(db.pool())
    .await
    .op("claim a job")?;
    row.map(|r| {
        Ok(Job {
            id: r.try_get("id").op("read job id")?,
            upload_id: r.try_get("upload_id").op("read job upload")?,
            attempt: r.try_get("attempts").op("read job attempts")?,
        })
    })
    .transpose()
}

/// Marks a job finished (whatever the upload's outcome), so it is never claimed again.
/// Returns `false` when this claim no longer holds the job (another worker took it over).
///
/// # Errors
/// The update fails.
pub async fn finish(db: &Db, job: &Job, now: i64) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE jobs SET state = 'done', lease_until = NULL, updated_at = $1 \
         WHERE id = $2 AND attempts = $3 AND state = 'running'",
    )
    .bind(now)
    .bind(&job.id)
    .bind(job.attempt)
    .execute(db.pool())
    .await
    .op("finish a job")?;
    Ok(done.rows_affected() == 1)
}

/// Whether this claim still holds the job: no other worker has claimed it since (a lease that
/// ran out without a new claim still holds).
///
/// # Errors
/// The query fails.
pub async fn holds(db: &Db, job: &Job) -> Result<bool, DbError> {
    let row = sqlx::query(
        "SELECT 1 AS held FROM jobs WHERE id = $1 AND attempts = $2 AND state = 'running'",
    )
    .bind(&job.id)
    .bind(job.attempt)
    .fetch_optional(db.pool())
    .await
    .op("check a job's lease")?;
    Ok(row.is_some())
}

/// Extends a running job's lease to `until` and records its progress (0–100), so a long job
/// is not taken over while its worker is alive. Returns `false` when this claim no longer
/// holds the job.
///
/// # Errors
/// The update fails.
pub async fn renew(
    db: &Db,
    job: &Job,
    until: i64,
    progress: u8,
    now: i64,
) -> Result<bool, DbError> {
    let renewed = sqlx::query(
        "UPDATE jobs SET lease_until = $1, progress = $2, updated_at = $3 \
         WHERE id = $4 AND attempts = $5 AND state = 'running'",
    )
    .bind(until)
    .bind(i64::from(progress))
    .bind(now)
    .bind(&job.id)
    .bind(job.attempt)
    .execute(db.pool())
    .await
    .op("renew a job's lease")?;
    Ok(renewed.rows_affected() == 1)
}

/// Leaves a job leased until `at`, when it may be claimed again (after a passing failure).
///
/// # Errors
/// The update fails.
pub async fn retry_at(db: &Db, job: &Job, at: i64) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE jobs SET lease_until = $1, updated_at = $2 WHERE id = $3 AND attempts = $4 AND state = 'running'",
    )
    .bind(at)
    .bind(at)
    .bind(&job.id)
    .bind(job.attempt)
    .execute(db.pool())
    .await
    .op("schedule a job retry")?;
    Ok(())
}

/// Jobs queued and running, and when the oldest queued one was queued (ms), if any.
///
/// # Errors
/// The query fails.
pub async fn waiting(db: &Db) -> Result<(u64, u64, Option<i64>), DbError> {
    let row = sqlx::query(
        "SELECT \
           COALESCE(SUM(CASE WHEN state = 'queued' THEN 1 ELSE 0 END), 0) AS queued, \
           COALESCE(SUM(CASE WHEN state = 'running' THEN 1 ELSE 0 END), 0) AS running, \
           MIN(CASE WHEN state = 'queued' THEN created_at END) AS oldest \
         FROM jobs WHERE state IN ('queued', 'running')",
    )
    .fetch_one(db.pool())
    .await
    .op("count waiting jobs")?;
    let count = |name: &str| -> Result<u64, DbError> {
        let n: i64 = row.try_get(name).op("read a job count")?;
        Ok(u64::try_from(n).unwrap_or(0))
    };
    let oldest: Option<i64> = row.try_get("oldest").op("read the oldest job")?;
    Ok((count("queued")?, count("running")?, oldest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatabaseUrl;

    /// A database with one queued job, for upload `u1`.
    async fn one_job(dir: &std::path::Path) -> Db {
        let db = Db::open(&DatabaseUrl::in_data_dir(dir)).await.unwrap();
        for sql in [
            "INSERT INTO accounts (id, name, api_key_sha256, access_key, secret, created_at) VALUES ('a', 'A', 'h', 'k', 's', 0)",
            "INSERT INTO pipelines (id, account_id, name, storage_root, template, created_at) VALUES ('p', 'a', 'P', 'r', 't', 0)",
            "INSERT INTO uploads (id, account_id, pipeline_id, flavour, filename, object_key, status, created_at, updated_at) VALUES ('u1', 'a', 'p', 'tus', 'f', 'k', 5, 0, 0)",
            "INSERT INTO jobs (id, upload_id, state, attempts, created_at, updated_at) VALUES ('j1', 'u1', 'queued', 0, 0, 0)",
        ] {
            sqlx::query(sql).execute(db.pool()).await.unwrap();
        }
        db
    }

    #[tokio::test]
    async fn a_worker_whose_lease_ran_out_can_neither_renew_nor_close_the_new_claim() {
        let dir = tempfile::tempdir().unwrap();
        let db = one_job(dir.path()).await;
        let first = claim(&db, "origin-a", 10, 0).await.unwrap().unwrap();
        assert!(
            claim(&db, "origin-b", 10, 5).await.unwrap().is_none(),
            "leased"
        );
        assert!(renew(&db, &first, 30, 10, 8).await.unwrap());
        // origin-a stalls past its lease; origin-b takes the job over.
        let second = claim(&db, "origin-b", 10, 31).await.unwrap().unwrap();
        assert_eq!((first.attempt, second.attempt), (1, 2));
        assert!(!renew(&db, &first, 60, 50, 32).await.unwrap());
        assert!(!holds(&db, &first).await.unwrap());
        assert!(!finish(&db, &first, 33).await.unwrap());
        retry_at(&db, &first, 1_000).await.unwrap();
        assert!(
            holds(&db, &second).await.unwrap(),
            "the stale worker changed nothing"
        );
        assert!(renew(&db, &second, 45, 90, 34).await.unwrap());
        assert!(finish(&db, &second, 40).await.unwrap());
        assert!(
            claim(&db, "origin-a", 10, 100).await.unwrap().is_none(),
            "done for good"
        );
    }
}
