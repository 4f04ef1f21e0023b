//! serde `Deserializer` reading a struct out of an [`Nvlist`].
//!
//! Unknown keys are skipped (old readers keep working with newer writers); a missing key or
//! a value of the wrong type is a [`MapError`] naming the key's full path. Integers are range
//! checked, so a NUMBER of 300 is refused for a `u8` field instead of being truncated.

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

use crate::map_error::{MapError, MapErrorKind};
use crate::nvlist::{Nvlist, Value};

/// Deserialises a struct from an nvlist.
pub fn from_nvlist<T: DeserializeOwned>(nvl: &Nvlist) -> Result<T, MapError> {
    T::deserialize(ListDe(nvl))
}

/// Deserialises any value from an nvlist value.
pub fn from_value<T: DeserializeOwned>(v: &Value) -> Result<T, MapError> {
    T::deserialize(ValueDe(v))
}

fn wrong(expected: &str, found: &Value) -> MapError {
    MapError::new(MapErrorKind::WrongType {
        expected: expected.to_owned(),
        found: found.type_name().to_owned(),
    })
}

/// A whole list as a map.
struct ListDe<'a>(&'a Nvlist);

impl<'de, 'a> de::Deserializer<'de> for ListDe<'a> {
    type Error = MapError;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, MapError> {
        visitor.visit_map(ListAccess {
            iter: Box::new(self.0.iter()),
            value: None,
        })
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, MapError> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, MapError> {
        visitor.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, MapError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, MapError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, MapError> {
        enum_from_list(self.0, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf seq tuple tuple_struct map struct identifier ignored_any
    }
}

fn enum_from_list<'de, V: Visitor<'de>>(nvl: &Nvlist, visitor: V) -> Result<V::Value, MapError> {
    let mut it = nvl.iter();
    match (it.next(), it.next()) {
        (Some((variant, value)), None) => visitor.visit_enum(EnumAccess { variant, value }),
        _ => Err(MapError::invalid(
            "an enum is a list with exactly one key, the variant",
        )),
    }
}

struct ListAccess<'a> {
    iter: Box<dyn Iterator<Item = (&'a str, &'a Value)> + 'a>,
    value: Option<(&'a str, &'a Value)>,
}

impl<'de, 'a> de::MapAccess<'de> for ListAccess<'a> {
    type Error = MapError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, MapError> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some((k, v));
                seed.deserialize(k.into_deserializer()).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, MapError> {
        let (k, v) = self
            .value
            .take()
            .ok_or_else(|| MapError::invalid("value requested before its key"))?;
        seed.deserialize(ValueDe(v)).map_err(|e| e.within(k))
    }
}

struct EnumAccess<'a> {
    variant: &'a str,
    value: &'a Value,
}

impl<'de, 'a> de::EnumAccess<'de> for EnumAccess<'a> {
    type Error = MapError;
    type Variant = VariantDe<'a>;

    fn variant_seed<V: de::DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, VariantDe<'a>), MapError> {
        let v = seed.deserialize(self.variant.into_deserializer())?;
        Ok((
            v,
            VariantDe {
                name: self.variant,
                value: Some(self.value),
            },
        ))
    }
}

struct VariantDe<'a> {
    name: &'a str,
    value: Option<&'a Value>,
}

impl<'de, 'a> de::VariantAccess<'de> for VariantDe<'a> {
    type Error = MapError;

    fn unit_variant(self) -> Result<(), MapError> {
        Ok(())
    }

    fn newtype_variant_seed<T: de::DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, MapError> {
        match self.value {
            Some(v) => seed
                .deserialize(ValueDe(v))
                .map_err(|e| e.within(self.name)),
            None => Err(MapError::invalid("variant needs a value")),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, MapError> {
        match self.value {
            Some(v) => de::Deserializer::deserialize_seq(ValueDe(v), visitor)
                .map_err(|e| e.within(self.name)),
            None => Err(MapError::invalid("variant needs a value")),
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, MapError> {
        match self.value {
            Some(v) => de::Deserializer::deserialize_map(ValueDe(v), visitor)
                .map_err(|e| e.within(self.name)),
            None => Err(MapError::invalid("variant needs a value")),
        }
    }
}

/// One value.
struct ValueDe<'a>(&'a Value);

impl<'a> ValueDe<'a> {
    fn number(&self, expected: &str) -> Result<u64, MapError> {
        match self.0 {
            Value::Number(n) => Ok(*n),
            other => Err(wrong(expected, other)),
        }
    }

    fn unsigned<T: TryFrom<u64>>(&self, expected: &str) -> Result<T, MapError> {
        let n = self.number(expected)?;
        T::try_from(n).map_err(|_| MapError::invalid(format!("{n} does not fit {expected}")))
    }

    fn signed<T: TryFrom<i64>>(&self, expected: &str) -> Result<T, MapError> {
        let n = self.number(expected)? as i64;
        T::try_from(n).map_err(|_| MapError::invalid(format!("{n} does not fit {expected}")))
    }
}

macro_rules! de_unsigned {
    ($method:ident, $visit:ident, $t:ty) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, MapError> {
            visitor.$visit(self.unsigned::<$t>(concat!("number (", stringify!($t), ")"))?)
        }
    };
}

macro_rules! de_signed {
    ($method:ident, $visit:ident, $t:ty) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, MapError> {
            visitor.$visit(self.signed::<$t>(concat!("number (", stringify!($t), ")"))?)
        }
    };
}

impl<'de, 'a> de::Deserializer<'de> for ValueDe<'a> {
    type Error = MapError;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, MapError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => visitor.visit_u64(*n),
            Value::String(s) => visitor.visit_str(s),
            Value::Nvlist(n) => ListDe(n).deserialize_any(visitor),
            Value::Descriptor(d) => visitor.visit_i64(*d),
            Value::Binary(b) => visitor.visit_bytes(b),
            Value::BoolArray(_)
            | Value::NumberArray(_)
            | Value::StringArray(_)
            | Value::NvlistArray(_)
            | Value::DescriptorArray(_) => self.deserialize_seq(visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, MapError> {
        match self.0 {
            Value::Bool(b) => visitor.visit_bool(*b),
            other => Err(wrong("bool", other)),
        }
    }

    de_unsigned!(deserialize_u8, visit_u8, u8);
    de_unsigned!(deserialize_u16, visit_u16, u16);
    de_unsigned!(deserialize_u32, visit_u32, u32);
    de_unsigned!(deserialize_u64, visit_u64, u64);
    de_signed!(deserialize_i8, visit_i8, i8);
    de_signed!(deserialize_i16, visit_i16, i16);
    de_signed!(deserialize_i32, visit_i32, i32);
    de_signed!(deserialize_i64, visit_i64, i64);

    fn deserialize_f32<V: Visitor<'de>>(self, _: V) -> Result<V::Value, MapError> {
        Err(MapError::new(MapErrorKind::Unsupported(
            "libnv has no floating-point type",
        )))
    }

    fn deserialize_f64<V: Visitor<'de>>(self, _: V) -> Result<V::Value, MapError> {
        Err(MapError::new(MapErrorKind::Unsupported(
            "libnv has no floating-point type",
        )))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, MapError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, MapError> {
        match self.0 {
            Value::String(s) => visitor.visit_str(s),
            other => Err(wrong("string", other)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, MapError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, MapError> {
        match self.0 {
            Value::Binary(b) => visitor.visit_bytes(b),
            other => Err(wrong("binary", other)),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, MapError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, MapError> {
        visitor.visit_some(self)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, MapError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            other => Err(wrong("null", other)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, MapError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Nvlist(_) => visitor.visit_unit(),
            other => Err(wrong("null", other)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, MapError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, MapError> {
        match self.0 {
            Value::BoolArray(a) => {
                visitor.visit_seq(SeqAccess::new(a.iter().map(|b| Item::Bool(*b))))
            }
            Value::NumberArray(a) => {
                visitor.visit_seq(SeqAccess::new(a.iter().map(|n| Item::Number(*n))))
            }
            Value::StringArray(a) => {
                visitor.visit_seq(SeqAccess::new(a.iter().map(|s| Item::Str(s.as_str()))))
            }
            Value::NvlistArray(a) => visitor.visit_seq(SeqAccess::new(a.iter().map(Item::List))),
            Value::DescriptorArray(a) => {
                visitor.visit_seq(SeqAccess::new(a.iter().map(|d| Item::Number(*d as u64))))
            }
            other => Err(wrong("array", other)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, MapError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, MapError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, MapError> {
        match self.0 {
            Value::Nvlist(n) => ListDe(n).deserialize_any(visitor),
            other => Err(wrong("nvlist", other)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, MapError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, MapError> {
        match self.0 {
            Value::String(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            Value::Nvlist(n) => enum_from_list(n, visitor),
            other => Err(wrong("string or nvlist (enum)", other)),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, MapError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, MapError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! { i128 u128 }
}

enum Item<'a> {
    Bool(bool),
    Number(u64),
    Str(&'a str),
    List(&'a Nvlist),
}

struct SeqAccess<'a, I: Iterator<Item = Item<'a>>> {
    iter: I,
    idx: usize,
}

impl<'a, I: Iterator<Item = Item<'a>>> SeqAccess<'a, I> {
    fn new(iter: I) -> Self {
        SeqAccess { iter, idx: 0 }
    }
}

impl<'de, 'a, I: Iterator<Item = Item<'a>>> de::SeqAccess<'de> for SeqAccess<'a, I> {
    type Error = MapError;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, MapError> {
        let Some(item) = self.iter.next() else {
            return Ok(None);
        };
        let idx = self.idx;
        self.idx += 1;
        let r = match item {
            Item::Bool(b) => seed.deserialize(ValueDe(&Value::Bool(b))),
            Item::Number(n) => seed.deserialize(ValueDe(&Value::Number(n))),
            Item::Str(s) => seed.deserialize(StrDe(s)),
            Item::List(l) => seed.deserialize(ListDe(l)),
        };
        r.map(Some).map_err(|e| e.within(format!("[{idx}]")))
    }

    fn size_hint(&self) -> Option<usize> {
        self.iter.size_hint().1
    }
}

/// A string array item, borrowed.
struct StrDe<'a>(&'a str);

impl<'de, 'a> de::Deserializer<'de> for StrDe<'a> {
    type Error = MapError;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, MapError> {
        visitor.visit_str(self.0)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, MapError> {
        visitor.visit_enum(self.0.into_deserializer())
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, MapError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, MapError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}
