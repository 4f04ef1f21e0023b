//! serde `Serializer` producing an [`Nvlist`]: each command is a plain Rust struct.
//!
//! Mapping: struct/map → NVLIST, integers → NUMBER (signed ones as two's complement, as C
//! callers of libnv do), bool → BOOL, strings → STRING, `serialize_bytes` → BINARY,
//! unit → NULL, sequences → the matching libnv array type, unit enum variants → STRING.
//! `None`, empty byte strings and empty sequences leave the key out, because libnv cannot
//! carry an empty BINARY or array; read such fields back with `#[serde(default)]`.
//! The serializer says it is not human-readable, so types with both forms (addresses)
//! pick their binary nvlist form here and their text form in JSON.

use serde::Serialize;
use serde::ser::{self, Impossible};

use crate::map_error::{MapError, MapErrorKind};
use crate::nvlist::{Nvlist, Value};

/// Serialises a struct or map into an nvlist.
pub fn to_nvlist<T: Serialize + ?Sized>(value: &T) -> Result<Nvlist, MapError> {
    match value.serialize(ValueSer)? {
        Some(Value::Nvlist(n)) => Ok(n),
        None | Some(Value::Null) => Ok(Nvlist::new()),
        Some(other) => Err(MapError::new(MapErrorKind::Unsupported(
            "top level must be a struct or map",
        ))
        .within(format!("<{}>", other.type_name()))),
    }
}

/// Serialises one value; `None` means "leave the key out".
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Option<Value>, MapError> {
    value.serialize(ValueSer)
}

fn unsupported(what: &'static str) -> MapError {
    MapError::new(MapErrorKind::Unsupported(what))
}

struct ValueSer;

impl ser::Serializer for ValueSer {
    type Ok = Option<Value>;
    type Error = MapError;
    type SerializeSeq = SeqSer;
    type SerializeTuple = SeqSer;
    type SerializeTupleStruct = SeqSer;
    type SerializeTupleVariant = VariantSeqSer;
    type SerializeMap = MapSer;
    type SerializeStruct = StructSer;
    type SerializeStructVariant = VariantStructSer;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn serialize_bool(self, v: bool) -> Result<Self::Ok, MapError> {
        Ok(Some(Value::Bool(v)))
    }
    fn serialize_i8(self, v: i8) -> Result<Self::Ok, MapError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<Self::Ok, MapError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<Self::Ok, MapError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<Self::Ok, MapError> {
        Ok(Some(Value::Number(v as u64)))
    }
    fn serialize_u8(self, v: u8) -> Result<Self::Ok, MapError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<Self::Ok, MapError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<Self::Ok, MapError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<Self::Ok, MapError> {
        Ok(Some(Value::Number(v)))
    }
    fn serialize_f32(self, _: f32) -> Result<Self::Ok, MapError> {
        Err(unsupported("libnv has no floating-point type"))
    }
    fn serialize_f64(self, _: f64) -> Result<Self::Ok, MapError> {
        Err(unsupported("libnv has no floating-point type"))
    }
    fn serialize_char(self, v: char) -> Result<Self::Ok, MapError> {
        Ok(Some(Value::String(v.to_string())))
    }
    fn serialize_str(self, v: &str) -> Result<Self::Ok, MapError> {
        Ok(Some(Value::String(v.to_owned())))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Self::Ok, MapError> {
        if v.is_empty() {
            Ok(None)
        } else {
            Ok(Some(Value::Binary(v.into())))
        }
    }
    fn serialize_none(self) -> Result<Self::Ok, MapError> {
        Ok(None)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Self::Ok, MapError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Self::Ok, MapError> {
        Ok(Some(Value::Null))
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Self::Ok, MapError> {
        Ok(Some(Value::Null))
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Self::Ok, MapError> {
        Ok(Some(Value::String(variant.to_owned())))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Self::Ok, MapError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Self::Ok, MapError> {
        let mut nvl = Nvlist::new();
        if let Some(v) = value.serialize(ValueSer).map_err(|e| e.within(variant))? {
            nvl.push(variant, v);
        } else {
            nvl.push(variant, Value::Null);
        }
        Ok(Some(Value::Nvlist(nvl)))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqSer, MapError> {
        Ok(SeqSer {
            items: Vec::with_capacity(len.unwrap_or(0).min(4096)),
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqSer, MapError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<SeqSer, MapError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<VariantSeqSer, MapError> {
        Ok(VariantSeqSer {
            variant,
            seq: self.serialize_seq(Some(len))?,
        })
    }
    fn serialize_map(self, _: Option<usize>) -> Result<MapSer, MapError> {
        Ok(MapSer {
            nvl: Nvlist::new(),
            key: None,
        })
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<StructSer, MapError> {
        Ok(StructSer { nvl: Nvlist::new() })
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<VariantStructSer, MapError> {
        Ok(VariantStructSer {
            variant,
            inner: StructSer { nvl: Nvlist::new() },
        })
    }
}

/// Collects sequence items and turns them into the one libnv array type they share.
pub struct SeqSer {
    items: Vec<Value>,
}

impl SeqSer {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), MapError> {
        let idx = self.items.len();
        match value
            .serialize(ValueSer)
            .map_err(|e| e.within(format!("[{idx}]")))?
        {
            Some(v) => self.items.push(v),
            None => {
                return Err(unsupported("array items cannot be absent").within(format!("[{idx}]")));
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Option<Value>, MapError> {
        let Some(first) = self.items.first() else {
            return Ok(None);
        };
        let code = first.type_code();
        if let Some(pos) = self.items.iter().position(|v| v.type_code() != code) {
            return Err(
                unsupported("array items must all have one type").within(format!("[{pos}]"))
            );
        }
        macro_rules! collect {
            ($variant:ident, $arr:ident) => {
                Value::$arr(
                    self.items
                        .into_iter()
                        .map(|v| match v {
                            Value::$variant(x) => x,
                            _ => unreachable!("checked above"),
                        })
                        .collect(),
                )
            };
        }
        Ok(Some(match first {
            Value::Bool(_) => collect!(Bool, BoolArray),
            Value::Number(_) => collect!(Number, NumberArray),
            Value::String(_) => collect!(String, StringArray),
            Value::Nvlist(_) => collect!(Nvlist, NvlistArray),
            Value::Descriptor(_) => collect!(Descriptor, DescriptorArray),
            _ => return Err(unsupported("libnv has no array of this type")),
        }))
    }
}

impl ser::SerializeSeq for SeqSer {
    type Ok = Option<Value>;
    type Error = MapError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), MapError> {
        self.push(value)
    }
    fn end(self) -> Result<Option<Value>, MapError> {
        self.finish()
    }
}

impl ser::SerializeTuple for SeqSer {
    type Ok = Option<Value>;
    type Error = MapError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), MapError> {
        self.push(value)
    }
    fn end(self) -> Result<Option<Value>, MapError> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for SeqSer {
    type Ok = Option<Value>;
    type Error = MapError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), MapError> {
        self.push(value)
    }
    fn end(self) -> Result<Option<Value>, MapError> {
        self.finish()
    }
}

/// `{variant: [items]}`.
pub struct VariantSeqSer {
    variant: &'static str,
    seq: SeqSer,
}

impl ser::SerializeTupleVariant for VariantSeqSer {
    type Ok = Option<Value>;
    type Error = MapError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), MapError> {
        self.seq.push(value).map_err(|e| e.within(self.variant))
    }
    fn end(self) -> Result<Option<Value>, MapError> {
        let mut nvl = Nvlist::new();
        if let Some(v) = self.seq.finish().map_err(|e| e.within(self.variant))? {
            nvl.push(self.variant, v);
        }
        Ok(Some(Value::Nvlist(nvl)))
    }
}

/// A map with string keys.
pub struct MapSer {
    nvl: Nvlist,
    key: Option<String>,
}

impl ser::SerializeMap for MapSer {
    type Ok = Option<Value>;
    type Error = MapError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), MapError> {
        self.key = Some(key.serialize(KeySer)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), MapError> {
        let key = self
            .key
            .take()
            .ok_or_else(|| unsupported("map value without a key"))?;
        if let Some(v) = value.serialize(ValueSer).map_err(|e| e.within(&key))? {
            self.nvl.push(key, v);
        }
        Ok(())
    }
    fn end(self) -> Result<Option<Value>, MapError> {
        Ok(Some(Value::Nvlist(self.nvl)))
    }
}

/// A struct: one pair per present field.
pub struct StructSer {
    nvl: Nvlist,
}

impl ser::SerializeStruct for StructSer {
    type Ok = Option<Value>;
    type Error = MapError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), MapError> {
        if let Some(v) = value.serialize(ValueSer).map_err(|e| e.within(key))? {
            self.nvl.push(key, v);
        }
        Ok(())
    }
    fn end(self) -> Result<Option<Value>, MapError> {
        Ok(Some(Value::Nvlist(self.nvl)))
    }
}

/// `{variant: {fields}}`.
pub struct VariantStructSer {
    variant: &'static str,
    inner: StructSer,
}

impl ser::SerializeStructVariant for VariantStructSer {
    type Ok = Option<Value>;
    type Error = MapError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), MapError> {
        ser::SerializeStruct::serialize_field(&mut self.inner, key, value)
            .map_err(|e| e.within(self.variant))
    }
    fn end(self) -> Result<Option<Value>, MapError> {
        let mut nvl = Nvlist::new();
        nvl.push(self.variant, Value::Nvlist(self.inner.nvl));
        Ok(Some(Value::Nvlist(nvl)))
    }
}

/// Map keys must be strings (libnv names).
struct KeySer;

impl ser::Serializer for KeySer {
    type Ok = String;
    type Error = MapError;
    type SerializeSeq = Impossible<String, MapError>;
    type SerializeTuple = Impossible<String, MapError>;
    type SerializeTupleStruct = Impossible<String, MapError>;
    type SerializeTupleVariant = Impossible<String, MapError>;
    type SerializeMap = Impossible<String, MapError>;
    type SerializeStruct = Impossible<String, MapError>;
    type SerializeStructVariant = Impossible<String, MapError>;

    fn serialize_str(self, v: &str) -> Result<String, MapError> {
        Ok(v.to_owned())
    }
    fn serialize_char(self, v: char) -> Result<String, MapError> {
        Ok(v.to_string())
    }
    fn serialize_u64(self, v: u64) -> Result<String, MapError> {
        Ok(v.to_string())
    }
    fn serialize_u32(self, v: u32) -> Result<String, MapError> {
        Ok(v.to_string())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        v: &'static str,
    ) -> Result<String, MapError> {
        Ok(v.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<String, MapError> {
        value.serialize(self)
    }
    fn serialize_bool(self, _: bool) -> Result<String, MapError> {
        Err(unsupported("map keys must be strings"))
    }
    fn serialize_i8(self, _: i8) -> Result<String, MapError> {
        Err(unsupported("map keys must be strings"))
    }
    fn serialize_i16(self, _: i16) -> Result<String, MapError> {
        Err(unsupported("map keys must be strings"))
    }
    fn serialize_i32(self, _: i32) -> Result<String, MapError> {
        Err(unsupported("map keys must be strings"))
    }
    fn serialize_i64(self, _: i64) -> Result<String, MapError> {
        Err(unsupported("map keys must be strings"))
    }
    fn serialize_u8(self, _: u8) -> Result<String, MapError> {
        Err(unsupported("map keys must be strings"))
    }
    fn serialize_u16(self, _: u16) -> Result<String, MapError> {
        Err(unsupported("map keys must be strings"))
    }
    fn serialize_f32(self, _: f32) -> Result<String, MapError> {
        Err(unsupported("map keys must be strings"))
    }
    fn serialize_f64(self, _: f64) -> Result<String, MapError> {
        Err(unsupported("map keys must be strings"))
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<String, MapError> {
        Err(unsupported("map keys must be strings"))
    }
    fn serialize_none(self) -> Result<String, MapError> {
        Err(unsupported("map keys must be strings"))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<String, MapError> {
        Err(unsupported("map keys must be strings"))
    }
    fn serialize_unit(self) -> Result<String, MapError> {
        Err(unsupported("map keys must be strings"))
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<String, MapError> {
        Err(unsupported("map keys must be strings"))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String, MapError> {
        Err(unsupported("map keys must be strings"))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, MapError> {
        Err(unsupported("map keys must be strings"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, MapError> {
        Err(unsupported("map keys must be strings"))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, MapError> {
        Err(unsupported("map keys must be strings"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, MapError> {
        Err(unsupported("map keys must be strings"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, MapError> {
        Err(unsupported("map keys must be strings"))
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, MapError> {
        Err(unsupported("map keys must be strings"))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, MapError> {
        Err(unsupported("map keys must be strings"))
    }
}
