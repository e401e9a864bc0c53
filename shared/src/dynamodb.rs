//! DynamoDB items of the calls table, as every adapter writes and reads them: the key
//! attributes, attribute constructors, and [`ItemExt`] to read an item's attributes.
//!
//! Calls, rooms and recordings share one table: `pk = CALL#<CallSid>` (a call's state and
//! its recordings) or `CONF#<ConferenceSid>` (a room and its events), and a sort key.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::calls::StoreError;

/// The key attributes of the calls table (the template declares the same).
pub const PARTITION_KEY: &str = "pk";
pub const SORT_KEY: &str = "sk";
/// The sort key of a call's (or a room's) current state.
pub const STATE_SK: &str = "STATE";

/// An item, as the SDK hands it over.
pub type Item = HashMap<String, AttributeValue>;

/// A string attribute.
pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// A number attribute.
pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The key of an item of the calls table: `CALL#…` for calls, `CONF#…` for rooms.
pub fn table_key(partition: String, sort_key: &str) -> Item {
    HashMap::from([
        (PARTITION_KEY.to_owned(), s(partition)),
        (SORT_KEY.to_owned(), s(sort_key)),
    ])
}

/// The key of one of a call's items (its state, a recording, a replay's backup).
pub fn call_item_key(call_sid: &str, sort_key: &str) -> Item {
    table_key(format!("CALL#{call_sid}"), sort_key)
}

/// Reading an item's attributes by name; a missing attribute or one of another type reads
/// as absent.
pub trait ItemExt {
    fn text(&self, name: &str) -> Option<&str>;
    fn number<T: std::str::FromStr>(&self, name: &str) -> Option<T>;
    /// A boolean attribute that is `true`.
    fn is_true(&self, name: &str) -> bool;
    fn string_set(&self, name: &str) -> Option<&[String]>;
}

impl ItemExt for Item {
    fn text(&self, name: &str) -> Option<&str> {
        match self.get(name) {
            Some(AttributeValue::S(v)) => Some(v),
            _ => None,
        }
    }

    fn number<T: std::str::FromStr>(&self, name: &str) -> Option<T> {
        match self.get(name) {
            Some(AttributeValue::N(v)) => v.parse().ok(),
            _ => None,
        }
    }

    fn is_true(&self, name: &str) -> bool {
        matches!(self.get(name), Some(AttributeValue::Bool(true)))
    }

    fn string_set(&self, name: &str) -> Option<&[String]> {
        match self.get(name) {
            Some(AttributeValue::Ss(v)) => Some(v),
            _ => None,
        }
    }
}

/// One item of `table`, read strongly consistent: every caller decides on what it reads.
pub async fn get_consistent(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    key: Item,
) -> Result<Option<Item>, StoreError> {
    let output = client
        .get_item()
        .table_name(table)
        .set_key(Some(key))
        .consistent_read(true)
        .send()
        .await
        .map_err(store_error)?;
    Ok(output.item)
}

/// An SDK failure as a store error, in one line (code and message, or the causes).
pub fn store_error<E>(e: aws_sdk_dynamodb::error::SdkError<E>) -> StoreError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    StoreError(crate::aws::error_summary(&e))
}
