//! The stand-in's phone numbers, TwiML Apps, calls and recordings, served as Twilio's REST
//! API serves them
//! (shapes from Twilio's OpenAPI description, `twilio/twilio-oai`
//! `spec/json/twilio_api_v2010.json`):
//! - `GET /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json`, `.../Applications.json`,
//!   `.../Calls.json` (`StartTime>`: on or after a `YYYY-MM-DD` day) and `.../Recordings.json`
//!   (`DateCreated>`; a recording deleted from Twilio is no longer listed): pages of
//!   `PageSize` (default 50, at most 1000) under the resource's snake_case key, with `page`, `page_size`, `start`, `end`,
//!   `uri`, `first_page_uri`, `previous_page_uri` and `next_page_uri` (`null` on the last);
//! - `POST .../IncomingPhoneNumbers/{Sid}.json` and `.../Applications/{Sid}.json`: form
//!   parameters (`VoiceUrl`, `VoiceMethod`, `VoiceFallbackUrl`, `VoiceFallbackMethod`,
//!   `StatusCallback`, `StatusCallbackMethod`, …) change the resource, which is returned;
//! - Basic auth with the account or an API key, else 401 `{"code": 20003, ...}`; an unknown
//!   SID is 404 `{"code": 20404, ...}`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::media_server::MediaState;

/// A call for the Calls list.
#[derive(Debug, Clone)]
pub struct CallResource {
    pub sid: String,
    pub parent_call_sid: Option<String>,
    pub status: String,
    pub from: String,
    pub to: String,
    pub direction: String,
    pub duration: u32,
}

/// What a number or App is wired to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wiring {
    pub voice_url: String,
    pub voice_method: String,
    pub voice_fallback_url: String,
    pub voice_fallback_method: String,
    pub status_callback: String,
    pub status_callback_method: String,
}

/// The account's numbers and Apps, as Twilio keeps them.
#[derive(Default)]
pub struct Provisioned {
    numbers: Mutex<Vec<Value>>,
    applications: Mutex<Vec<Value>>,
    calls: Mutex<Vec<Value>>,
    recordings: Mutex<Vec<Value>>,
}

/// Now in Twilio's RFC 2822 form.
pub fn rfc2822_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default()
}

const DATE: &str = "Mon, 16 Nov 2026 10:00:00 +0000";

impl Provisioned {
    pub fn add_number(&self, account: &str, sid: &str, phone_number: &str, wiring: &Wiring) {
        let uri = format!("/2010-04-01/Accounts/{account}/IncomingPhoneNumbers/{sid}.json");
        let mut number = json!({
            "account_sid": account, "address_requirements": "none", "address_sid": null,
            "api_version": "2010-04-01", "beta": false, "bundle_sid": null,
            "capabilities": {"voice": true, "sms": true, "mms": true, "fax": false},
            "date_created": DATE, "date_updated": DATE, "emergency_address_sid": null,
            "emergency_address_status": "unregistered", "emergency_status": "Inactive",
            "friendly_name": phone_number, "identity_sid": null, "origin": "twilio",
            "phone_number": phone_number, "sid": sid, "sms_application_sid": "",
            "sms_fallback_method": "POST", "sms_fallback_url": "", "sms_method": "POST",
            "sms_url": "", "status": "in-use", "trunk_sid": null, "type": "local", "uri": uri,
            "voice_application_sid": "", "voice_caller_id_lookup": false,
            "voice_receive_mode": "voice",
        });
        set_wiring(&mut number, wiring);
        lock(&self.numbers).push(number);
    }

    pub fn add_application(&self, account: &str, sid: &str, name: &str, wiring: &Wiring) {
        let uri = format!("/2010-04-01/Accounts/{account}/Applications/{sid}.json");
        let mut app = json!({
            "account_sid": account, "api_version": "2010-04-01", "date_created": DATE,
            "date_updated": DATE, "friendly_name": name, "message_status_callback": null,
            "public_application_connect_enabled": false, "sid": sid,
            "sms_fallback_method": "POST", "sms_fallback_url": "", "sms_method": "POST",
            "sms_status_callback": "", "sms_url": "", "uri": uri,
            "voice_caller_id_lookup": false,
        });
        set_wiring(&mut app, wiring);
        lock(&self.applications).push(app);
    }

    /// A call Twilio placed: its final `status` as the Calls list reports it.
    pub fn add_call(&self, account: &str, call: &CallResource) {
        let uri = format!("/2010-04-01/Accounts/{account}/Calls/{}.json", call.sid);
        let now = rfc2822_now();
        lock(&self.calls).push(json!({
            "account_sid": account, "answered_by": null, "api_version": "2010-04-01",
            "caller_name": null, "date_created": now, "date_updated": now,
            "direction": call.direction, "duration": call.duration.to_string(),
            "end_time": now, "forwarded_from": null, "from": call.from,
            "from_formatted": call.from, "group_sid": null,
            "parent_call_sid": call.parent_call_sid, "phone_number_sid": null, "price": null,
            "price_unit": "USD", "queue_time": "0", "sid": call.sid, "start_time": now,
            "status": call.status, "subresource_uris": {}, "to": call.to,
            "to_formatted": call.to, "trunk_sid": null, "uri": uri,
        }));
    }

    /// A recording Twilio holds, whose media is at `media_url`.
    pub fn add_recording(
        &self,
        account: &str,
        call_sid: &str,
        sid: &str,
        (duration, channels): (u32, u16),
        media_url: &str,
    ) {
        let uri = format!("/2010-04-01/Accounts/{account}/Recordings/{sid}.json");
        let now = rfc2822_now();
        lock(&self.recordings).push(json!({
            "account_sid": account, "api_version": "2010-04-01", "call_sid": call_sid,
            "channels": channels, "conference_sid": null, "date_created": now,
            "date_updated": now, "duration": duration.to_string(), "encryption_details": null,
            "error_code": null, "media_url": media_url, "price": null, "price_unit": "USD",
            "sid": sid, "source": "RecordVerb", "start_time": now, "status": "completed",
            "subresource_uris": {}, "uri": uri,
        }));
    }

    /// A list resource's items and the key its pages hold them under.
    fn list(&self, resource: &str) -> Option<(&Mutex<Vec<Value>>, &'static str)> {
        match resource {
            "IncomingPhoneNumbers" => Some((&self.numbers, "incoming_phone_numbers")),
            "Applications" => Some((&self.applications, "applications")),
            "Calls" => Some((&self.calls, "calls")),
            "Recordings" => Some((&self.recordings, "recordings")),
            _ => None,
        }
    }
}

fn lock(list: &Mutex<Vec<Value>>) -> std::sync::MutexGuard<'_, Vec<Value>> {
    list.lock().unwrap_or_else(PoisonError::into_inner)
}

fn set_wiring(resource: &mut Value, wiring: &Wiring) {
    for (field, value) in [
        ("voice_url", &wiring.voice_url),
        ("voice_method", &wiring.voice_method),
        ("voice_fallback_url", &wiring.voice_fallback_url),
        ("voice_fallback_method", &wiring.voice_fallback_method),
        ("status_callback", &wiring.status_callback),
        ("status_callback_method", &wiring.status_callback_method),
    ] {
        resource[field] = json!(value);
    }
}

/// The form parameters an update takes, and the field each sets.
const PARAMETERS: [(&str, &str); 7] = [
    ("VoiceUrl", "voice_url"),
    ("VoiceMethod", "voice_method"),
    ("VoiceFallbackUrl", "voice_fallback_url"),
    ("VoiceFallbackMethod", "voice_fallback_method"),
    ("StatusCallback", "status_callback"),
    ("StatusCallbackMethod", "status_callback_method"),
    ("FriendlyName", "friendly_name"),
];

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status.as_u16(),
        })
        .to_string(),
    )
        .into_response()
}

fn unauthorized() -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    response.headers_mut().insert(
        "www-authenticate",
        axum::http::HeaderValue::from_static("Basic realm=\"Twilio API\""),
    );
    response
}

fn not_found(uri: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        20404,
        &format!("The requested resource {uri} was not found"),
    )
}

/// `GET .../{Resource}.json`: one page.
pub(crate) async fn list(
    State(state): State<Arc<MediaState>>,
    Path((account, file)): Path<(String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    state.count_request();
    let query: HashMap<String, String> =
        form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let uri = format!("/2010-04-01/Accounts/{account}/{file}");
    if !state.authorized(&account, &headers) {
        return unauthorized();
    }
    let Some(resource) = file.strip_suffix(".json") else {
        return not_found(&uri);
    };
    let Some((list, key)) = state.provisioned.list(resource) else {
        return not_found(&uri);
    };
    let page_size: usize = query
        .get("PageSize")
        .and_then(|s| s.parse().ok())
        .unwrap_or(50)
        .clamp(1, 1000);
    let page: usize = query.get("Page").and_then(|s| s.parse().ok()).unwrap_or(0);
    // Twilio filters these lists by day: on or after `YYYY-MM-DD`.
    let on_or_after = |item: &Value, field: &str, filter: &str| {
        let Some(day) = query.get(filter) else {
            return true;
        };
        item[field]
            .as_str()
            .and_then(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc2822).ok()
            })
            .is_some_and(|t| t.date().to_string() >= *day)
    };
    let items: Vec<Value> = match resource {
        "Calls" => lock(list)
            .iter()
            .filter(|c| on_or_after(c, "start_time", "StartTime>"))
            .cloned()
            .collect(),
        "Recordings" => lock(list)
            .iter()
            .filter(|r| on_or_after(r, "date_created", "DateCreated>"))
            .filter(|r| !state.is_deleted(r["sid"].as_str().unwrap_or_default()))
            .cloned()
            .collect(),
        _ => lock(list).clone(),
    };
    let start = page * page_size;
    let slice: Vec<Value> = items.iter().skip(start).take(page_size).cloned().collect();
    let page_uri = |page: usize| {
        let token = items
            .get(page * page_size)
            .and_then(|item| item["sid"].as_str())
            .map(|sid| format!("&PageToken=PA{sid}"))
            .unwrap_or_default();
        format!("{uri}?PageSize={page_size}&Page={page}{token}")
    };
    let more = start + slice.len() < items.len();
    let body = json!({
        key: slice,
        "end": (start + slice.len()).saturating_sub(1),
        "first_page_uri": format!("{uri}?PageSize={page_size}&Page=0"),
        "next_page_uri": more.then(|| page_uri(page + 1)),
        "page": page,
        "page_size": page_size,
        "previous_page_uri": (page > 0).then(|| page_uri(page - 1)),
        "start": start,
        "uri": format!("{uri}?PageSize={page_size}&Page={page}"),
    });
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `POST .../{Resource}/{Sid}.json`: an update.
pub(crate) async fn update(
    State(state): State<Arc<MediaState>>,
    Path((account, resource, file)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    state.count_request();
    let uri = format!("/2010-04-01/Accounts/{account}/{resource}/{file}");
    if !state.authorized(&account, &headers) {
        return unauthorized();
    }
    let (Some((list, _)), Some(sid)) = (
        state.provisioned.list(&resource),
        file.strip_suffix(".json"),
    ) else {
        return not_found(&uri);
    };
    let mut items = lock(list);
    let Some(item) = items.iter_mut().find(|item| item["sid"] == sid) else {
        return not_found(&uri);
    };
    for (name, value) in form_urlencoded::parse(body.as_bytes()) {
        if let Some((_, field)) = PARAMETERS.iter().find(|(p, _)| *p == name) {
            item[*field] = json!(value);
        }
    }
    item["date_updated"] = json!(DATE);
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        item.to_string(),
    )
        .into_response()
}
