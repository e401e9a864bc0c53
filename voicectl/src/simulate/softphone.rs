//! A browser softphone signing in before it calls: the Voice SDK's part, then Twilio's.
//!
//! The softphone asks the stack's `POST /softphone/token` for an Access Token with its
//! identity provider's bearer JWT; Twilio then places the call only if the token is one it
//! accepts: HS256 under the API key named in `iss` (error 20101 "Invalid Access Token"
//! otherwise), unexpired (20104), for the account (`sub`), with a Voice grant whose outgoing
//! application is the TwiML App and an identity that is the caller's `client:` name.

use std::sync::Arc;

use serde_json::Value;

/// Token requests a softphone makes before it gives up on signing in.
const SIGN_IN_ATTEMPTS: u32 = 8;

/// An identity provider: a bearer JWT for an identity.
pub type IdentityProvider = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// How softphone calls sign in, and what Twilio checks their tokens against.
#[derive(Clone)]
pub struct SoftphoneSignIn {
    pub token_url: String,
    pub identity_provider: IdentityProvider,
    pub account_sid: String,
    pub api_key_sid: String,
    pub api_key_secret: String,
    pub twiml_app_sid: String,
    pub http: reqwest::Client,
}

impl std::fmt::Debug for SoftphoneSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftphoneSignIn")
            .field("token_url", &self.token_url)
            .field("api_key_sid", &self.api_key_sid)
            .field("twiml_app_sid", &self.twiml_app_sid)
            .finish_non_exhaustive()
    }
}

impl SoftphoneSignIn {
    /// Fetches `identity`'s Access Token and checks it as Twilio would; the reason when the
    /// call could not be placed.
    /// A 503 is tried again after its `Retry-After`, as a softphone app would, a few times.
    pub async fn sign_in(&self, identity: &str) -> Result<(), String> {
        let mut attempts = 0;
        let response = loop {
            attempts += 1;
            let bearer = (self.identity_provider)(identity);
            let response = self
                .http
                .post(&self.token_url)
                .bearer_auth(bearer)
                .send()
                .await
                .map_err(|e| format!("token request failed: {}", voicehooks::error_chain(&e)))?;
            if response.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE
                || attempts == SIGN_IN_ATTEMPTS
            {
                break response;
            }
            let wait = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(1u64);
            tokio::time::sleep(std::time::Duration::from_secs(wait.min(10))).await;
        };
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .map_err(|e| format!("token answer {status} is not JSON: {e}"))?;
        if !status.is_success() {
            return Err(format!("token request answered {status}: {body}"));
        }
        if body["identity"] != identity {
            return Err(format!("token is for {}, not {identity}", body["identity"]));
        }
        let token = body["token"].as_str().ok_or("no token in the answer")?;
        self.twilio_accepts(token, identity)
    }

    fn twilio_accepts(&self, token: &str, identity: &str) -> Result<(), String> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| format!("20101 invalid token: {e}"))?;
        if header.cty.as_deref() != Some("twilio-fpa;v=1") {
            return Err(format!("20101 invalid token: cty {:?}", header.cty));
        }
        let key = jsonwebtoken::DecodingKey::from_secret(self.api_key_secret.as_bytes())
            .map_err(|e| format!("the API key secret is unusable: {e}"))?;
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_issuer(&[&self.api_key_sid]);
        validation.validate_aud = false;
        validation.validate_nbf = true;
        let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    "20104 Access Token expired".to_owned()
                }
                _ => format!("20101 invalid Access Token: {e}"),
            })?
            .claims;
        let grants = &claims["grants"];
        if claims["sub"] != self.account_sid.as_str() {
            return Err(format!("20101 token for account {}", claims["sub"]));
        }
        if grants["identity"] != identity {
            return Err(format!(
                "token identity {} is not {identity}",
                grants["identity"]
            ));
        }
        if grants["voice"]["outgoing"]["application_sid"] != self.twiml_app_sid.as_str() {
            return Err(format!(
                "the Voice grant's outgoing application is {}, not the TwiML App",
                grants["voice"]["outgoing"]["application_sid"]
            ));
        }
        Ok(())
    }
}
