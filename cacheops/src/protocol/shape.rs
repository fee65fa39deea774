//! A fingerprint of a result type's shape, part of every cache key.
//!
//! Cached payloads are compact MessagePack, which does not name fields: data of an
//! old struct layout could decode into a new one with fields swapped. So the key
//! includes what the type's `Deserialize` impl asks for: struct and field names,
//! primitive types, options, sequences, enum variants. We learn that by driving the
//! type's own `Deserialize` with a tracing deserializer that feeds placeholder
//! values. Types that reject the placeholders (e.g. a timestamp parsed from a
//! string) stop the trace there; what was recorded up to that point is still a
//! deterministic function of the type.

use std::any::TypeId;
use std::fmt;
use std::sync::{LazyLock, RwLock};

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use xxhash_rust::xxh3::Xxh3;

use crate::memo::ByTypeId;

/// The shape fingerprint of `T`, computed once per type and process.
pub(crate) fn shape_of<T: DeserializeOwned + 'static>() -> u128 {
    static SHAPES: LazyLock<RwLock<ByTypeId<u128>>> = LazyLock::new(Default::default);
    let id = TypeId::of::<T>();
    if let Some(shape) = SHAPES.read().ok().and_then(|m| m.get(&id).copied()) {
        return shape;
    }
    let shape = trace::<T>();
    if let Ok(mut shapes) = SHAPES.write() {
        shapes.insert(id, shape);
    }
    shape
}

fn trace<T: DeserializeOwned>() -> u128 {
    let mut tracer = Tracer {
        hash: Xxh3::new(),
        depth: 0,
    };
    // An error only means the trace stopped early; the record so far is the shape.
    let _ = T::deserialize(&mut tracer);
    tracer.hash.digest128()
}

/// Past this nesting depth (recursive types) the trace stops.
const MAX_DEPTH: usize = 24;

struct Tracer {
    hash: Xxh3,
    depth: usize,
}

impl Tracer {
    fn record(&mut self, word: &str) {
        self.hash.update(&(word.len() as u32).to_le_bytes());
        self.hash.update(word.as_bytes());
    }

    fn nested<R>(&mut self, f: impl FnOnce(&mut Self) -> Result<R, Stop>) -> Result<R, Stop> {
        if self.depth >= MAX_DEPTH {
            self.record("...");
            return Err(Stop);
        }
        self.depth += 1;
        let result = f(self);
        self.depth -= 1;
        result
    }
}

/// The trace stopped: the type rejected a placeholder or needs self-description.
#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("shape trace stopped")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Stop
    }
}

macro_rules! primitive {
    ($($method:ident => $visit:ident($($value:expr)?)),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
            self.record(stringify!($method));
            visitor.$visit($($value)?)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &mut Tracer {
    type Error = Stop;

    primitive! {
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_i8(0), deserialize_i16 => visit_i16(0),
        deserialize_i32 => visit_i32(0), deserialize_i64 => visit_i64(0),
        deserialize_i128 => visit_i128(0),
        deserialize_u8 => visit_u8(0), deserialize_u16 => visit_u16(0),
        deserialize_u32 => visit_u32(0), deserialize_u64 => visit_u64(0),
        deserialize_u128 => visit_u128(0),
        deserialize_f32 => visit_f32(0.0), deserialize_f64 => visit_f64(0.0),
        deserialize_char => visit_char('\0'),
        deserialize_str => visit_str(""), deserialize_string => visit_str(""),
        deserialize_bytes => visit_bytes(&[]), deserialize_byte_buf => visit_bytes(&[]),
        deserialize_unit => visit_unit(), deserialize_identifier => visit_str(""),
        deserialize_ignored_any => visit_unit(),
    }

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        self.record("any");
        Err(Stop)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        self.record("option");
        self.nested(|t| visitor.visit_some(t))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        self.record(name);
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        self.record(name);
        self.nested(|t| visitor.visit_newtype_struct(t))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        self.record("seq");
        self.nested(|t| visitor.visit_seq(Elements { tracer: t, left: 1 }))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Stop> {
        self.record(&format!("tuple{len}"));
        self.nested(|t| {
            visitor.visit_seq(Elements {
                tracer: t,
                left: len,
            })
        })
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        self.record(name);
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        self.record("map");
        self.nested(|t| {
            visitor.visit_map(Fields {
                tracer: t,
                names: &[""],
                next: 0,
            })
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        self.record(name);
        fields.iter().for_each(|f| self.record(f));
        self.nested(|t| {
            visitor.visit_map(Fields {
                tracer: t,
                names: fields,
                next: 0,
            })
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        self.record(name);
        variants.iter().for_each(|v| self.record(v));
        let first = variants.first().copied().unwrap_or("");
        self.nested(|t| {
            visitor.visit_enum(Variant {
                tracer: t,
                name: first,
            })
        })
    }
}

/// Yields `left` traced elements.
struct Elements<'a> {
    tracer: &'a mut Tracer,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Elements<'_> {
    type Error = Stop;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Stop> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.tracer).map(Some)
    }
}

/// Yields each named field once, its value traced.
struct Fields<'a> {
    tracer: &'a mut Tracer,
    names: &'static [&'static str],
    next: usize,
}

impl<'de> de::MapAccess<'de> for Fields<'_> {
    type Error = Stop;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Stop> {
        let Some(name) = self.names.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        seed.deserialize((*name).into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Stop> {
        seed.deserialize(&mut *self.tracer)
    }
}

/// The first variant of an enum, its content traced.
struct Variant<'a> {
    tracer: &'a mut Tracer,
    name: &'static str,
}

impl<'de, 'a> de::EnumAccess<'de> for Variant<'a> {
    type Error = Stop;
    type Variant = &'a mut Tracer;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), Stop> {
        let value = seed.deserialize(self.name.into_deserializer())?;
        Ok((value, self.tracer))
    }
}

impl<'de> de::VariantAccess<'de> for &mut Tracer {
    type Error = Stop;

    fn unit_variant(self) -> Result<(), Stop> {
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, Stop> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Stop> {
        de::Deserializer::deserialize_tuple(self, len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        de::Deserializer::deserialize_struct(self, "", fields, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    mod v1 {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        pub(super) struct Article {
            pub id: i32,
            pub title: String,
        }
    }
    mod v2 {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        pub(super) struct Article {
            pub id: i32,
            pub title: String,
            pub views: Option<i64>,
        }
    }
    mod v3 {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        pub(super) struct Article {
            pub id: i64,
            pub title: String,
        }
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Tree {
        children: Vec<Tree>,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    enum Kind {
        A,
        B(i32),
    }

    #[test]
    fn changed_fields_change_the_shape() {
        let shapes = [
            shape_of::<v1::Article>(),
            shape_of::<v2::Article>(),
            shape_of::<v3::Article>(),
        ];
        assert_ne!(shapes[0], shapes[1]);
        assert_ne!(shapes[0], shapes[2]);
        assert_eq!(shapes[0], shape_of::<v1::Article>());
    }

    #[test]
    fn primitives_tuples_and_collections_differ() {
        let shapes = [
            shape_of::<i64>(),
            shape_of::<i32>(),
            shape_of::<Option<i64>>(),
            shape_of::<Vec<i64>>(),
            shape_of::<(i64, String)>(),
            shape_of::<(String, i64)>(),
            shape_of::<Kind>(),
        ];
        for (i, a) in shapes.iter().enumerate() {
            for b in &shapes[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn recursive_types_terminate() {
        assert_eq!(shape_of::<Tree>(), shape_of::<Tree>());
    }
}
