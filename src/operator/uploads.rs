//! `uplink uploads list | inspect | cancel`: an operator's view of uploads, straight from the
//! state database (beside a live server, like the other operator commands). Which edge holds
//! an upload's unforwarded bytes is not recorded yet (the fleet work will add it).

use super::OperatorError;
use crate::clock::rfc3339 as time;
use crate::config::DatabaseUrl;
use crate::db::{upload, Db};
use crate::upload::Status;
use serde_json::{json, Value};

/// A status given as its code (`7`) or its text (`failed`).
///
/// # Errors
/// Neither.
pub fn parse_status(raw: &str) -> Result<Status, OperatorError> {
    Status::ALL
        .into_iter()
        .find(|s| s.text() == raw || s.code().to_string() == raw)
        .ok_or_else(|| {
            let known: Vec<String> = Status::ALL
                .iter()
                .map(|s| format!("{} ({})", s.text(), s.code()))
                .collect();
            OperatorError::Invalid(format!(
                "unknown status {raw:?}: use one of {}",
                known.join(", ")
            ))
        })
}

/// `uplink uploads list`: the newest uploads (of an account, in a status), one per line.
///
/// # Errors
/// A bad status, or a database failure.
pub async fn list(
    database: &DatabaseUrl,
    account: Option<&str>,
    status: Option<&str>,
    limit: i64,
) -> Result<String, OperatorError> {
    let status = status.map(parse_status).transpose()?;
    let db = Db::open(database).await?;
    let uploads = upload::list(&db, account, status, limit).await?;
    let mut out = format!(
        "{:36}  {:36}  {:11}  {:>12}  {:20}  FILENAME\n",
        "ID", "ACCOUNT", "STATUS", "BYTES", "CREATED"
    );
    for u in &uploads {
        out += &format!(
            "{:36}  {:36}  {:11}  {:>12}  {:20}  {}\n",
            u.id,
            u.account_id,
            u.status.text(),
            u.size.map_or("-".into(), |s| s.to_string()),
            time(u.created_at),
            u.filename
        );
    }
    Ok(out)
}

/// `uplink uploads inspect`: one upload's record, its status history and where its bytes are.
///
/// # Errors
/// No such upload, or a database failure.
pub async fn inspect(database: &DatabaseUrl, id: &str) -> Result<Value, OperatorError> {
    let db = Db::open(database).await?;
    let u = upload::get(&db, id)
        .await?
        .ok_or_else(|| OperatorError::Invalid(format!("no upload {id}")))?;
    let history: Vec<&str> = upload::history(&db, id)
        .await?
        .into_iter()
        .map(Status::text)
        .collect();
    // What reached storage of a resumable upload still receiving (another edge continues
    // after it), and which edge holds a chunked upload's unstored chunks.
    let in_storage = upload::parts(&db, id).await?.map(|p| {
        json!({
            "multipart_id": p.multipart_id,
            "parts": p.parts.len(),
            "bytes": p.parts.iter().map(|part| part.len).sum::<u64>(),
        })
    });
    Ok(json!({
        "id": u.id,
        "account_id": u.account_id,
        "pipeline_id": u.pipeline_id,
        "flavour": u.flavour,
        "filename": u.filename,
        "status": u.status.code(),
        "status_text": u.status.text(),
        "history": history,
        "error": u.error,
        "error_code": u.error_code,
        "object_key": u.object_key,
        "declared_size": u.declared_size,
        "size": u.size,
        "sha256": u.sha256,
        "grant": u.token_id,
        "held_by_edge": u.holder,
        "in_storage": in_storage,
        "outputs": u.outputs,
        "created_at": time(u.created_at),
        "updated_at": time(u.updated_at),
    }))
}

/// `uplink uploads cancel`: drops an upload that is still receiving (its record; the sweepers
/// remove its spooled bytes and partial objects). A stored upload cannot be cancelled.
///
/// # Errors
/// No such upload, one past receiving, or a database failure.
pub async fn cancel(database: &DatabaseUrl, id: &str) -> Result<String, OperatorError> {
    let db = Db::open(database).await?;
    let u = upload::get(&db, id)
        .await?
        .ok_or_else(|| OperatorError::Invalid(format!("no upload {id}")))?;
    if u.status != Status::Receiving || !upload::delete_receiving(&db, id).await? {
        return Err(OperatorError::Invalid(format!(
            "upload {id} is {}: only an upload still receiving can be cancelled",
            u.status.text()
        )));
    }
    Ok(format!(
        "cancelled {id}; the edges' and the origin's sweepers remove its bytes\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_by_text_or_code() {
        assert_eq!(parse_status("failed").unwrap(), Status::Failed);
        assert_eq!(parse_status("0").unwrap(), Status::Receiving);
        let err = parse_status("lost").unwrap_err().to_string();
        assert!(err.contains("receiving (0)"), "{err}");
    }
}
