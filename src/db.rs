//! The state database through sqlx: one pool, one set of migrations and one set of SQL for
//! SQLite (the single-machine default) and PostgreSQL (shared by several origins). Queries live
//! in one file per table; they take the current time as an argument (milliseconds since the
//! epoch) so callers, not SQL, own the clock.
//!
//! Must not depend on HTTP, the store or the media code.

pub mod account;
pub mod edge;
pub mod job;
pub mod outbox;
pub mod upload;
pub mod upload_token;

use crate::config::DatabaseUrl;
use sqlx::any::{install_default_drivers, AnyPoolOptions};
use sqlx::AnyPool;

/// A database failure, naming the operation.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database could not be reached or opened.
    #[error("cannot open the database")]
    Connect(#[source] sqlx::Error),
    /// Applying the schema migrations failed.
    #[error("cannot apply database migrations")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A statement failed.
    #[error("database error while trying to {op}")]
    Query {
        /// What we were doing.
        op: &'static str,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// A stored value is not what the schema allows.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// Adds the operation's name to a sqlx error.
pub(crate) trait Op<T> {
    fn op(self, op: &'static str) -> Result<T, DbError>;
}

impl<T> Op<T> for Result<T, sqlx::Error> {
    fn op(self, op: &'static str) -> Result<T, DbError> {
        self.map_err(|source| DbError::Query { op, source })
    }
}

/// Which SQL dialect the pool speaks, for the few statements that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The database handle: cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

impl Db {
    /// Opens the database (creating a SQLite file if needed) and applies pending migrations.
    ///
    /// # Errors
    /// The database cannot be reached or migrated.
    pub async fn open(url: &DatabaseUrl) -> Result<Self, DbError> {
        install_default_drivers();
        let backend = match url {
            DatabaseUrl::Sqlite(_) => Backend::Sqlite,
            DatabaseUrl::Postgres(_) => Backend::Postgres,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 16,
            })
            .connect(url.as_str())
            .await
            .map_err(DbError::Connect)?;
        if backend == Backend::Sqlite {
            // WAL lets `uplink account create` write while a server is running on the same file.
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&pool)
                .await
                .op("enable SQLite WAL")?;
        }
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(DbError::Migrate)?;
        Ok(Self { pool, backend })
    }

    /// The dialect.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The pool's connections: in use, idle and its maximum.
    #[must_use]
    pub fn pool_use(&self) -> (u32, u32, u32) {
        let size = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(size);
        (
            size.saturating_sub(idle),
            idle,
            self.pool.options().get_max_connections(),
        )
    }

    /// Checks that the database answers.
    ///
    /// # Errors
    /// It does not.
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .op("ping the database")?;
        Ok(())
    }
}

pub use crate::clock::now_ms;
