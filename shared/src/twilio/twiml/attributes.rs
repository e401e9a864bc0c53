//! An element's attributes, read from its struct through serde: the struct's fields, under
//! their serde names and in their order, are the one list of the element's attributes. The
//! writer writes the ones that are set; the schema check allows exactly those names.
//!
//! Written by hand: quick-xml's own serializer makes attributes only of `@`-prefixed names,
//! which would change the keys a flow's configuration uses for the same structs.

use std::fmt::{self, Display, Write};

use serde::Serialize;
use serde::ser::{self, Impossible, SerializeMap, SerializeStruct, Serializer};

/// Calls `visit` with each attribute's name and, when it is set, its value as TwiML reads it.
pub(super) fn for_each(element: &impl Serialize, mut visit: impl FnMut(&str, Option<&str>)) {
    let mut fields = Fields {
        visit: &mut visit,
        key: String::new(),
        value: String::new(),
    };
    element
        .serialize(&mut fields)
        .expect("TwiML elements hold only text, numbers, flags and keywords");
}

/// Every attribute name an element of type `T` may carry.
pub(super) fn names<T: Serialize + Default>() -> Vec<String> {
    let mut names = Vec::new();
    for_each(&T::default(), |name, _| names.push(name.to_owned()));
    names
}

#[derive(Debug)]
pub(super) struct Unsupported(&'static str);

impl Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Unsupported {}

impl ser::Error for Unsupported {
    /// Static, so that an answer stays two words wide on the writer's path.
    fn custom<T: Display>(_: T) -> Self {
        Self("a value no attribute can hold")
    }
}

/// The methods of a serializer that refuses what an attribute cannot be.
macro_rules! refuse {
    ($($method:ident($($arg:ty),*) -> $ok:ty;)*) => {$(
        fn $method(self $(, _: $arg)*) -> Result<$ok, Unsupported> {
            Err(Unsupported(concat!("an attribute cannot be read from ", stringify!($method))))
        }
    )*};
}

/// Walks an element's fields (a struct, or a map when a field is `#[serde(flatten)]`).
struct Fields<'v, F> {
    visit: &'v mut F,
    key: String,
    /// Reused for each value, so numbers and flags cost no allocation each.
    value: String,
}

impl<F: FnMut(&str, Option<&str>)> Fields<'_, F> {
    #[inline]
    fn field(&mut self, key: &str, value: &(impl Serialize + ?Sized)) -> Result<(), Unsupported> {
        self.value.clear();
        let set = value.serialize(Text(&mut self.value))?;
        (self.visit)(key, set.then_some(self.value.as_str()));
        Ok(())
    }
}

impl<F: FnMut(&str, Option<&str>)> Serializer for &mut Fields<'_, F> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = Impossible<(), Unsupported>;
    type SerializeTuple = Impossible<(), Unsupported>;
    type SerializeTupleStruct = Impossible<(), Unsupported>;
    type SerializeTupleVariant = Impossible<(), Unsupported>;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), Unsupported>;

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Unsupported> {
        Ok(self)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self, Unsupported> {
        Ok(self)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), Unsupported> {
        Err(Unsupported("an element is a struct"))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<(), Unsupported> {
        Err(Unsupported("an element is a struct"))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Unsupported> {
        Err(Unsupported("an element is a struct"))
    }

    refuse! {
        serialize_bool(bool) -> ();
        serialize_i8(i8) -> ();
        serialize_i16(i16) -> ();
        serialize_i32(i32) -> ();
        serialize_i64(i64) -> ();
        serialize_u8(u8) -> ();
        serialize_u16(u16) -> ();
        serialize_u32(u32) -> ();
        serialize_u64(u64) -> ();
        serialize_f32(f32) -> ();
        serialize_f64(f64) -> ();
        serialize_char(char) -> ();
        serialize_str(&str) -> ();
        serialize_bytes(&[u8]) -> ();
        serialize_none() -> ();
        serialize_unit() -> ();
        serialize_unit_struct(&'static str) -> ();
        serialize_unit_variant(&'static str, u32, &'static str) -> ();
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant;
    }
}

impl<F: FnMut(&str, Option<&str>)> SerializeStruct for &mut Fields<'_, F> {
    type Ok = ();
    type Error = Unsupported;

    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        self.field(key, value)
    }

    fn end(self) -> Result<(), Unsupported> {
        Ok(())
    }
}

/// A struct with a `#[serde(flatten)]` field (the dial nouns' `LegCallbacks`) is walked as a
/// map of its fields and the flattened struct's.
impl<F: FnMut(&str, Option<&str>)> SerializeMap for &mut Fields<'_, F> {
    type Ok = ();
    type Error = Unsupported;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Unsupported> {
        self.key.clear();
        key.serialize(Text(&mut self.key)).map(drop)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        let key = std::mem::take(&mut self.key);
        let result = self.field(&key, value);
        self.key = key;
        result
    }

    fn end(self) -> Result<(), Unsupported> {
        Ok(())
    }
}

/// An attribute's value as TwiML text; answers whether it is set (`None` is not).
struct Text<'s>(&'s mut String);

impl Text<'_> {
    fn display(self, value: impl Display) -> Result<bool, Unsupported> {
        write!(self.0, "{value}").expect("writing to a String cannot fail");
        Ok(true)
    }
}

impl Serializer for Text<'_> {
    type Ok = bool;
    type Error = Unsupported;
    type SerializeSeq = Impossible<bool, Unsupported>;
    type SerializeTuple = Impossible<bool, Unsupported>;
    type SerializeTupleStruct = Impossible<bool, Unsupported>;
    type SerializeTupleVariant = Impossible<bool, Unsupported>;
    type SerializeMap = Impossible<bool, Unsupported>;
    type SerializeStruct = Impossible<bool, Unsupported>;
    type SerializeStructVariant = Impossible<bool, Unsupported>;

    #[inline]
    fn serialize_none(self) -> Result<bool, Unsupported> {
        Ok(false)
    }

    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<bool, Unsupported> {
        value.serialize(self)
    }

    #[inline]
    fn serialize_str(self, value: &str) -> Result<bool, Unsupported> {
        self.0.push_str(value);
        Ok(true)
    }

    /// Twilio's flags read `true` / `false`.
    fn serialize_bool(self, value: bool) -> Result<bool, Unsupported> {
        self.serialize_str(if value { "true" } else { "false" })
    }

    fn serialize_u32(self, value: u32) -> Result<bool, Unsupported> {
        self.display(value)
    }

    fn serialize_u64(self, value: u64) -> Result<bool, Unsupported> {
        self.display(value)
    }

    /// A keyword (`GET`, `busy`): the variant's serde name.
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<bool, Unsupported> {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<bool, Unsupported> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<bool, Unsupported> {
        Err(Unsupported("an attribute is a single value"))
    }

    refuse! {
        serialize_i8(i8) -> bool;
        serialize_i16(i16) -> bool;
        serialize_i32(i32) -> bool;
        serialize_i64(i64) -> bool;
        serialize_u8(u8) -> bool;
        serialize_u16(u16) -> bool;
        serialize_f32(f32) -> bool;
        serialize_f64(f64) -> bool;
        serialize_char(char) -> bool;
        serialize_bytes(&[u8]) -> bool;
        serialize_unit() -> bool;
        serialize_unit_struct(&'static str) -> bool;
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct(&'static str, usize) -> Self::SerializeStruct;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant;
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Method, Number, Say};
    use super::*;

    fn attributes(element: &impl Serialize) -> Vec<(String, Option<String>)> {
        let mut seen = Vec::new();
        for_each(element, |name, value| {
            seen.push((name.to_owned(), value.map(str::to_owned)))
        });
        seen
    }

    #[test]
    fn fields_become_attributes_in_order_with_twilios_names() {
        let say = Say {
            voice: Some("Polly.Amy".into()),
            loop_: Some(2),
            ..Say::new("hello")
        };
        assert_eq!(
            attributes(&say),
            [
                ("voice".into(), Some("Polly.Amy".into())),
                ("language".into(), None),
                ("loop".into(), Some("2".into())),
            ]
        );
    }

    #[test]
    fn a_flattened_struct_adds_its_attributes_after_the_elements_own() {
        let mut number = Number {
            send_digits: Some("1w2".into()),
            ..Number::default()
        };
        number.callbacks.status_callback_method = Some(Method::Get);
        let set: Vec<_> = attributes(&number)
            .into_iter()
            .filter_map(|(name, value)| Some((name, value?)))
            .collect();
        assert_eq!(
            set,
            [
                ("sendDigits".into(), "1w2".into()),
                ("statusCallbackMethod".into(), "GET".into()),
            ]
        );
        assert_eq!(
            names::<Number>(),
            [
                "sendDigits",
                "url",
                "statusCallback",
                "statusCallbackEvent",
                "statusCallbackMethod"
            ]
        );
    }
}
