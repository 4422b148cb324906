//! A serde `Serializer` writing Notary canonical JSON straight from typed values, without
//! building a `serde_json::Value` tree first (several times faster for large targets
//! files). It relies on struct fields being declared, and map keys iterating, in byte
//! order; anything else reports [`SerError::Unsorted`] and callers fall back to the
//! tree-based encoder, so output is always canonical.

use serde::ser::{self, Serialize};

use crate::cjson::{CanonicalError, MAX_EXACT_INT, write_string};

/// Why the direct encoder could not produce output.
#[derive(Debug)]
pub(crate) enum SerError {
    /// A value with no canonical form.
    Canonical(CanonicalError),
    /// Fields or keys not in byte order, or a shape this encoder does not handle.
    Fallback,
    /// A `Serialize` impl reported an error.
    Custom(String),
}

impl std::fmt::Display for SerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SerError::Canonical(e) => write!(f, "{e}"),
            SerError::Fallback => f.write_str("not encodable directly"),
            SerError::Custom(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for SerError {}

impl ser::Error for SerError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        SerError::Custom(msg.to_string())
    }
}

/// Canonical bytes of `value`; with `type_name`, the top-level object gets a leading
/// `"_type"` member (which sorts before every lower-case field name).
pub(crate) fn to_canonical_typed<T: Serialize + ?Sized>(
    value: &T,
    type_name: Option<&str>,
) -> Result<Vec<u8>, SerError> {
    let mut out = Vec::with_capacity(1024);
    let mut s = Ser {
        out: &mut out,
        inject_type: type_name,
    };
    value.serialize(&mut s)?;
    Ok(out)
}

pub(crate) struct Ser<'a> {
    out: &'a mut Vec<u8>,
    inject_type: Option<&'a str>,
}

pub(crate) struct Compound<'s, 'a> {
    ser: &'s mut Ser<'a>,
    first: bool,
    last_key: Option<std::borrow::Cow<'static, str>>,
}

fn number_u(out: &mut Vec<u8>, v: u64) -> Result<(), SerError> {
    if v > MAX_EXACT_INT {
        return Err(SerError::Canonical(CanonicalError::TooLarge(v.to_string())));
    }
    out.extend_from_slice(itoa_u(v).as_bytes());
    Ok(())
}

fn itoa_u(v: u64) -> String {
    v.to_string()
}

fn number_i(out: &mut Vec<u8>, v: i64) -> Result<(), SerError> {
    if v.unsigned_abs() > MAX_EXACT_INT {
        return Err(SerError::Canonical(CanonicalError::TooLarge(v.to_string())));
    }
    out.extend_from_slice(v.to_string().as_bytes());
    Ok(())
}

impl<'s, 'a> ser::Serializer for &'s mut Ser<'a> {
    type Ok = ();
    type Error = SerError;
    type SerializeSeq = Compound<'s, 'a>;
    type SerializeTuple = Compound<'s, 'a>;
    type SerializeTupleStruct = Compound<'s, 'a>;
    type SerializeTupleVariant = ser::Impossible<(), SerError>;
    type SerializeMap = Compound<'s, 'a>;
    type SerializeStruct = Compound<'s, 'a>;
    type SerializeStructVariant = ser::Impossible<(), SerError>;

    fn serialize_bool(self, v: bool) -> Result<(), SerError> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), SerError> {
        number_i(self.out, i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<(), SerError> {
        number_i(self.out, i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<(), SerError> {
        number_i(self.out, i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<(), SerError> {
        number_i(self.out, v)
    }
    fn serialize_u8(self, v: u8) -> Result<(), SerError> {
        number_u(self.out, u64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<(), SerError> {
        number_u(self.out, u64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<(), SerError> {
        number_u(self.out, u64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<(), SerError> {
        number_u(self.out, v)
    }
    fn serialize_f32(self, v: f32) -> Result<(), SerError> {
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), SerError> {
        if !v.is_finite() || v.fract() != 0.0 {
            return Err(SerError::Canonical(CanonicalError::NonIntegral(
                v.to_string(),
            )));
        }
        if v.abs() > MAX_EXACT_INT as f64 {
            return Err(SerError::Canonical(CanonicalError::TooLarge(v.to_string())));
        }
        #[allow(clippy::cast_possible_truncation)]
        number_i(self.out, v as i64)
    }
    fn serialize_char(self, v: char) -> Result<(), SerError> {
        let mut buf = [0u8; 4];
        write_string(self.out, v.encode_utf8(&mut buf));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), SerError> {
        write_string(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<(), SerError> {
        Err(SerError::Fallback)
    }
    fn serialize_none(self) -> Result<(), SerError> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), SerError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), SerError> {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), SerError> {
        self.serialize_none()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _idx: u32,
        variant: &'static str,
    ) -> Result<(), SerError> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), SerError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _idx: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<(), SerError> {
        Err(SerError::Fallback)
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'s, 'a>, SerError> {
        self.out.push(b'[');
        Ok(Compound {
            ser: self,
            first: true,
            last_key: None,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'s, 'a>, SerError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'s, 'a>, SerError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _idx: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, SerError> {
        Err(SerError::Fallback)
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'s, 'a>, SerError> {
        self.open_object()
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'s, 'a>, SerError> {
        self.open_object()
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _idx: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, SerError> {
        Err(SerError::Fallback)
    }
}

impl<'s, 'a> Ser<'a> {
    fn open_object(&'s mut self) -> Result<Compound<'s, 'a>, SerError> {
        self.out.push(b'{');
        let mut first = true;
        let mut last_key = None;
        if let Some(t) = self.inject_type.take() {
            write_string(self.out, "_type");
            self.out.push(b':');
            write_string(self.out, t);
            first = false;
            last_key = Some(std::borrow::Cow::Borrowed("_type"));
        }
        Ok(Compound {
            ser: self,
            first,
            last_key,
        })
    }
}

impl Compound<'_, '_> {
    fn comma(&mut self) {
        if !self.first {
            self.ser.out.push(b',');
        }
        self.first = false;
    }

    /// Writes a key, refusing any that does not sort after the previous one.
    fn key(&mut self, key: std::borrow::Cow<'static, str>) -> Result<(), SerError> {
        if let Some(last) = &self.last_key {
            if key.as_bytes() <= last.as_bytes() {
                return Err(SerError::Fallback);
            }
        }
        self.comma();
        write_string(self.ser.out, &key);
        self.ser.out.push(b':');
        self.last_key = Some(key);
        Ok(())
    }
}

impl ser::SerializeSeq for Compound<'_, '_> {
    type Ok = ();
    type Error = SerError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerError> {
        self.comma();
        value.serialize(&mut *self.ser)
    }
    fn end(self) -> Result<(), SerError> {
        self.ser.out.push(b']');
        Ok(())
    }
}

impl ser::SerializeTuple for Compound<'_, '_> {
    type Ok = ();
    type Error = SerError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerError> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<(), SerError> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = SerError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerError> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<(), SerError> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = SerError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), SerError> {
        let k = key.serialize(KeyCapture)?;
        self.key(std::borrow::Cow::Owned(k))
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerError> {
        value.serialize(&mut *self.ser)
    }
    fn end(self) -> Result<(), SerError> {
        self.ser.out.push(b'}');
        Ok(())
    }
}

impl ser::SerializeStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = SerError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), SerError> {
        self.key(std::borrow::Cow::Borrowed(key))?;
        value.serialize(&mut *self.ser)
    }
    fn end(self) -> Result<(), SerError> {
        self.ser.out.push(b'}');
        Ok(())
    }
}

/// Captures a map key, which must serialise as a string.
struct KeyCapture;

impl ser::Serializer for KeyCapture {
    type Ok = String;
    type Error = SerError;
    type SerializeSeq = ser::Impossible<String, SerError>;
    type SerializeTuple = ser::Impossible<String, SerError>;
    type SerializeTupleStruct = ser::Impossible<String, SerError>;
    type SerializeTupleVariant = ser::Impossible<String, SerError>;
    type SerializeMap = ser::Impossible<String, SerError>;
    type SerializeStruct = ser::Impossible<String, SerError>;
    type SerializeStructVariant = ser::Impossible<String, SerError>;

    fn serialize_str(self, v: &str) -> Result<String, SerError> {
        Ok(v.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _n: &'static str,
        v: &T,
    ) -> Result<String, SerError> {
        v.serialize(self)
    }
    fn serialize_bool(self, _v: bool) -> Result<String, SerError> {
        Err(SerError::Fallback)
    }
    fn serialize_i8(self, _v: i8) -> Result<String, SerError> {
        Err(SerError::Fallback)
    }
    fn serialize_i16(self, _v: i16) -> Result<String, SerError> {
        Err(SerError::Fallback)
    }
    fn serialize_i32(self, _v: i32) -> Result<String, SerError> {
        Err(SerError::Fallback)
    }
    fn serialize_i64(self, _v: i64) -> Result<String, SerError> {
        Err(SerError::Fallback)
    }
    fn serialize_u8(self, _v: u8) -> Result<String, SerError> {
        Err(SerError::Fallback)
    }
    fn serialize_u16(self, _v: u16) -> Result<String, SerError> {
        Err(SerError::Fallback)
    }
    fn serialize_u32(self, _v: u32) -> Result<String, SerError> {
        Err(SerError::Fallback)
    }
    fn serialize_u64(self, _v: u64) -> Result<String, SerError> {
        Err(SerError::Fallback)
    }
    fn serialize_f32(self, _v: f32) -> Result<String, SerError> {
        Err(SerError::Fallback)
    }
    fn serialize_f64(self, _v: f64) -> Result<String, SerError> {
        Err(SerError::Fallback)
    }
    fn serialize_char(self, v: char) -> Result<String, SerError> {
        Ok(v.to_string())
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<String, SerError> {
        Err(SerError::Fallback)
    }
    fn serialize_none(self) -> Result<String, SerError> {
        Err(SerError::Fallback)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _v: &T) -> Result<String, SerError> {
        Err(SerError::Fallback)
    }
    fn serialize_unit(self) -> Result<String, SerError> {
        Err(SerError::Fallback)
    }
    fn serialize_unit_struct(self, _n: &'static str) -> Result<String, SerError> {
        Err(SerError::Fallback)
    }
    fn serialize_unit_variant(
        self,
        _n: &'static str,
        _i: u32,
        v: &'static str,
    ) -> Result<String, SerError> {
        Ok(v.to_owned())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _n: &'static str,
        _i: u32,
        _v: &'static str,
        _value: &T,
    ) -> Result<String, SerError> {
        Err(SerError::Fallback)
    }
    fn serialize_seq(self, _l: Option<usize>) -> Result<Self::SerializeSeq, SerError> {
        Err(SerError::Fallback)
    }
    fn serialize_tuple(self, _l: usize) -> Result<Self::SerializeTuple, SerError> {
        Err(SerError::Fallback)
    }
    fn serialize_tuple_struct(
        self,
        _n: &'static str,
        _l: usize,
    ) -> Result<Self::SerializeTupleStruct, SerError> {
        Err(SerError::Fallback)
    }
    fn serialize_tuple_variant(
        self,
        _n: &'static str,
        _i: u32,
        _v: &'static str,
        _l: usize,
    ) -> Result<Self::SerializeTupleVariant, SerError> {
        Err(SerError::Fallback)
    }
    fn serialize_map(self, _l: Option<usize>) -> Result<Self::SerializeMap, SerError> {
        Err(SerError::Fallback)
    }
    fn serialize_struct(
        self,
        _n: &'static str,
        _l: usize,
    ) -> Result<Self::SerializeStruct, SerError> {
        Err(SerError::Fallback)
    }
    fn serialize_struct_variant(
        self,
        _n: &'static str,
        _i: u32,
        _v: &'static str,
        _l: usize,
    ) -> Result<Self::SerializeStructVariant, SerError> {
        Err(SerError::Fallback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_tree_encoder_on_values() {
        let v = json!({"a": [1, -2, true, null, "q\"\\<ü"], "b": {"z": 1, "y": 2.0}, "_x": {}});
        assert_eq!(
            to_canonical_typed(&v, None).unwrap(),
            crate::cjson::to_canonical(&v).unwrap()
        );
        assert!(matches!(
            to_canonical_typed(&json!([1.5]), None),
            Err(SerError::Canonical(_))
        ));
        assert!(matches!(
            to_canonical_typed(&json!([9007199254740993u64]), None),
            Err(SerError::Canonical(_))
        ));
    }

    #[test]
    fn unsorted_struct_fields_fall_back() {
        #[derive(serde::Serialize)]
        struct Bad {
            b: u8,
            a: u8,
        }
        assert!(matches!(
            to_canonical_typed(&Bad { b: 1, a: 2 }, None),
            Err(SerError::Fallback)
        ));
    }
}
