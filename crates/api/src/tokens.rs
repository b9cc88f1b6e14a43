//! `/api/tokens`: list, create and revoke witness tokens. Admins only; creations and revocations
//! are in the audit trail. A new token's secret is answered once and never stored.

use axum::extract::Path;
use axum::Json;
use witness_core::kind;

use crate::auth::Caller;
use crate::{blocking, ApiError, AuditRecord, Backend, CreatedToken, NewTokenRequest, Role, State, TokenList, TokenView};

pub(crate) async fn list<B: Backend>(axum::extract::State(api): State<B>, caller: Caller) -> Result<Json<TokenList>, ApiError> {
    caller.require(&[Role::Admin], "list tokens")?;
    Ok(Json(blocking(&api.backend, |b| b.tokens()).await?))
}

pub(crate) async fn create<B: Backend>(
    axum::extract::State(api): State<B>,
    caller: Caller,
    Json(request): Json<NewTokenRequest>,
) -> Result<Json<CreatedToken>, ApiError> {
    caller.require(&[Role::Admin], "create tokens")?;
    let created = blocking(&api.backend, move |b| b.create_token(&request)).await?;
    let what = format!("{} for {}", created.info.id, created.info.identity);
    if let Err(e) = api.backend.audit(&caller.principal, AuditRecord { kind: kind::TOKEN_CREATED, session: None, what, reason: None }).await
    {
        // A token the audit trail does not know of must not work: revoke it, then refuse.
        let id = created.info.id.clone();
        if let Err(revoke) = blocking(&api.backend, move |b| b.revoke_token(&id)).await {
            tracing::error!(token = %created.info.id, error = ?revoke, "a token not in the audit trail could not be revoked");
        }
        return Err(e.into());
    }
    Ok(Json(created))
}

pub(crate) async fn revoke<B: Backend>(
    axum::extract::State(api): State<B>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, ApiError> {
    caller.require(&[Role::Admin], "revoke tokens")?;
    let revoked = blocking(&api.backend, move |b| b.revoke_token(&id)).await?;
    let what = format!("{} of {}", revoked.id, revoked.identity);
    api.backend.audit(&caller.principal, AuditRecord { kind: kind::TOKEN_REVOKED, session: None, what, reason: None }).await?;
    Ok(Json(revoked))
}
