//! Twilio's REST API (2010-04-01), the parts we read and change: the account's phone numbers
//! (`IncomingPhoneNumbers`) and TwiML Apps (`Applications`). Shapes as Twilio's OpenAPI
//! description gives them (`twilio/twilio-oai`, `spec/json/twilio_api_v2010.json`): JSON with
//! snake_case fields, lists as pages under the resource's key with `next_page_uri` (relative,
//! `null` on the last page), updates as form posts of CamelCase parameters to the resource's
//! `.json` URI, and errors as `{"code", "message", "more_info", "status"}`.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::recording::media::BasicAuth;

/// Where Twilio's REST API is.
pub const API_BASE: &str = "https://api.twilio.com";
/// The largest page Twilio serves (`PageSize`, 1–1000): fewer round trips when listing.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Where a number or TwiML App sends calls: "A call comes in", "Primary handler fails" and
/// "Call status changes", each with its HTTP method (Twilio's default is POST).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct VoiceSettings {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub voice_url: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub voice_method: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub voice_fallback_url: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub voice_fallback_method: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub status_callback: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub status_callback_method: String,
}

/// Twilio writes an unset URL as `null` or `""`: both are "not set".
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// A phone number of the account. With `voice_application_sid` set, Twilio uses that TwiML
/// App's URLs instead of the number's own.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct IncomingPhoneNumber {
    pub sid: String,
    pub phone_number: String,
    #[serde(default)]
    pub voice_application_sid: Option<String>,
    #[serde(flatten)]
    pub voice: VoiceSettings,
}

/// A TwiML App (softphones dial out through one).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Application {
    pub sid: String,
    #[serde(default)]
    pub friendly_name: Option<String>,
    #[serde(flatten)]
    pub voice: VoiceSettings,
}

/// Twilio's error document.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiError {
    pub code: Option<u32>,
    pub message: String,
    #[serde(default)]
    pub more_info: Option<String>,
    pub status: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum RestError {
    #[error("Twilio's API could not be reached: {0}")]
    Unreachable(String),
    #[error("Twilio answered {status}: {message} (error {code}{more_info})", code = .code.map_or("?".into(), |c| c.to_string()), more_info = .more_info.as_deref().map(|m| format!(", {m}")).unwrap_or_default())]
    Api {
        status: u16,
        code: Option<u32>,
        message: String,
        more_info: Option<String>,
    },
    #[error("Twilio's answer to {0} was not what its API describes: {1}")]
    Shape(String, String),
}

/// The REST API of one account.
#[derive(Debug, Clone)]
pub struct RestClient {
    http: reqwest::Client,
    base: String,
    account_sid: String,
    auth: BasicAuth,
}

impl RestClient {
    /// `base` is [`API_BASE`] on Twilio (the stand-in's locally).
    pub fn new(http: reqwest::Client, base: &str, account_sid: &str, auth: BasicAuth) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            account_sid: account_sid.to_owned(),
            auth,
        }
    }

    /// The REST API of `credentials`' account, authenticated as [`TwilioCredentials::basic_auth`]
    /// says (the API key when there is one).
    ///
    /// [`TwilioCredentials::basic_auth`]: crate::secrets::TwilioCredentials::basic_auth
    pub fn for_account(
        http: reqwest::Client,
        base: &str,
        credentials: &crate::secrets::TwilioCredentials,
    ) -> Self {
        Self::new(
            http,
            base,
            &credentials.account_sid,
            credentials.basic_auth(),
        )
    }

    fn account_path(&self, resource: &str) -> String {
        format!("/2010-04-01/Accounts/{}/{resource}", self.account_sid)
    }

    /// Every item of a list resource (`IncomingPhoneNumbers.json`, key
    /// `incoming_phone_numbers`), following `next_page_uri` to the last page.
    pub async fn list<T: DeserializeOwned>(
        &self,
        resource: &str,
        key: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<T>, RestError> {
        let mut items = Vec::new();
        let mut query: Vec<(&str, String)> = query.to_vec();
        query.push(("PageSize", MAX_PAGE_SIZE.to_string()));
        let first = format!(
            "{}?{}",
            self.account_path(resource),
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())))
                .finish()
        );
        let mut next = Some(first);
        while let Some(uri) = next {
            let page: serde_json::Value = self.send(self.http.get(self.url(&uri)), &uri).await?;
            let shape = |why: String| RestError::Shape(uri.clone(), why);
            let list = page
                .get(key)
                .cloned()
                .ok_or_else(|| shape(format!("no {key:?} list")))?;
            items.extend(serde_json::from_value::<Vec<T>>(list).map_err(|e| shape(e.to_string()))?);
            next = page
                .get("next_page_uri")
                .and_then(serde_json::Value::as_str)
                .filter(|next| !next.is_empty())
                .map(str::to_owned);
        }
        Ok(items)
    }

    /// Posts `params` to an instance resource (`IncomingPhoneNumbers/PN….json`) and returns
    /// the updated resource.
    pub async fn update<T: DeserializeOwned>(
        &self,
        resource: &str,
        params: &[(&str, &str)],
    ) -> Result<T, RestError> {
        let uri = self.account_path(resource);
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter().copied())
            .finish();
        let request = self
            .http
            .post(self.url(&uri))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        let value = self.send(request, &uri).await?;
        serde_json::from_value(value).map_err(|e| RestError::Shape(uri, e.to_string()))
    }

    pub async fn incoming_phone_numbers(&self) -> Result<Vec<IncomingPhoneNumber>, RestError> {
        self.list("IncomingPhoneNumbers.json", "incoming_phone_numbers", &[])
            .await
    }

    pub async fn applications(&self) -> Result<Vec<Application>, RestError> {
        self.list("Applications.json", "applications", &[]).await
    }

    fn url(&self, uri: &str) -> String {
        format!("{}{uri}", self.base)
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        uri: &str,
    ) -> Result<serde_json::Value, RestError> {
        let response = request
            .basic_auth(&self.auth.username, Some(&self.auth.password))
            .send()
            .await
            .map_err(|e| RestError::Unreachable(crate::error_chain(&e)))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| RestError::Unreachable(crate::error_chain(&e)))?;
        if !status.is_success() {
            return Err(match serde_json::from_str::<ApiError>(&text) {
                Ok(e) => RestError::Api {
                    status: e.status,
                    code: e.code,
                    message: e.message,
                    more_info: e.more_info,
                },
                Err(_) => RestError::Api {
                    status: status.as_u16(),
                    code: None,
                    message: text.chars().take(200).collect(),
                    more_info: None,
                },
            });
        }
        serde_json::from_str(&text).map_err(|e| RestError::Shape(uri.to_owned(), e.to_string()))
    }
}

/// A call as Twilio's Calls list gives it. Times are RFC 2822 (`Wed, 02 Dec 2026 04:00:00
/// +0000`), `duration` whole seconds as a string.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Call {
    pub sid: String,
    pub account_sid: String,
    #[serde(default)]
    pub parent_call_sid: Option<String>,
    pub status: String,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub direction: Option<String>,
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub start_time: Option<String>,
    #[serde(default)]
    pub end_time: Option<String>,
}

/// A recording as Twilio's Recordings list gives it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Recording {
    pub sid: String,
    pub account_sid: String,
    #[serde(default)]
    pub call_sid: Option<String>,
    pub status: String,
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub channels: Option<u32>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub start_time: Option<String>,
    pub date_created: String,
    /// The media's URL (`…/Recordings/RE….json` minus `.json` is what callbacks carry).
    #[serde(default)]
    pub media_url: Option<String>,
}

impl RestClient {
    /// Calls that started on or after `date` (`YYYY-MM-DD`, UTC: Twilio filters by day).
    pub async fn calls_since(&self, date: &str) -> Result<Vec<Call>, RestError> {
        self.list("Calls.json", "calls", &[("StartTime>", date.to_owned())])
            .await
    }

    /// Recordings created on or after `date` (`YYYY-MM-DD`, UTC).
    pub async fn recordings_since(&self, date: &str) -> Result<Vec<Recording>, RestError> {
        self.list(
            "Recordings.json",
            "recordings",
            &[("DateCreated>", date.to_owned())],
        )
        .await
    }
}
