//! `POST /v1/auth/access_token`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiResult;
use crate::extract::ApiJson;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct TokenRequest {
    client_id: String,
    client_secret: String,
}

pub(crate) async fn access_token(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<TokenRequest>,
) -> ApiResult<Json<Value>> {
    let token = state
        .authenticator()
        .issue(&body.client_id, &body.client_secret)
        .await?;
    Ok(Json(json!({
        "ok": true,
        "accessToken": token.token,
        "expiresIn": token.expires_in,
        "tokenType": "Bearer",
    })))
}
