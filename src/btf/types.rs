//! Small, bounded queries over a parsed BTF: find a struct by name, find a member by name (descending into
//! anonymous structs and unions), and compute sizes. Everything returns `Result`; nothing trusts the BTF.

use std::collections::HashSet;

use btf_rs::{BtfType, Struct, Type};

use super::Btf;

use super::LayoutError;

/// How many typedef/const/volatile links, or nested anonymous members, we follow before calling the BTF
/// malformed. Real kernels need fewer than 8.
const MAX_DEPTH: usize = 32;

/// A member found inside a struct: where it starts (in bits, from the start of the outermost struct searched),
/// its bit width when it is a bitfield, and its BTF type id.
#[derive(Clone, Copy, Debug)]
pub struct Found {
    pub bit_offset: u64,
    pub bitfield_size: Option<u32>,
    pub type_id: u32,
}

fn btf_err(e: btf_rs::Error) -> LayoutError {
    LayoutError::Malformed(e.to_string())
}

/// Follows typedef, const, volatile, restrict and type tags down to the type that has a shape.
pub fn strip(btf: &Btf, ty: Type) -> Result<Type, LayoutError> {
    let mut ty = ty;
    for _ in 0..MAX_DEPTH {
        let next = match &ty {
            Type::Typedef(t) => t.get_type_id(),
            Type::Volatile(t) | Type::Const(t) | Type::Restrict(t) => t.get_type_id(),
            Type::TypeTag(t) => t.get_type_id(),
            _ => return Ok(ty),
        };
        let id = next.ok_or_else(|| LayoutError::Malformed("qualifier without a type".into()))?;
        ty = btf.resolve_type_by_id(id).map_err(btf_err)?;
    }
    Err(LayoutError::Malformed("type chain too deep".into()))
}

pub fn type_by_id(btf: &Btf, id: u32) -> Result<Type, LayoutError> {
    let ty = btf.resolve_type_by_id(id).map_err(btf_err)?;
    strip(btf, ty)
}

pub fn name_of(btf: &Btf, ty: &dyn BtfType) -> String {
    btf.resolve_name(ty).unwrap_or_default()
}

/// The size in bytes of a type. Pointers take `ptr_size`, which BTF does not state directly.
pub fn size_of(btf: &Btf, ty: &Type, ptr_size: u64) -> Result<u64, LayoutError> {
    let mut ty = strip(btf, ty.clone())?;
    let mut mult: u64 = 1;
    for _ in 0..MAX_DEPTH {
        let base = match &ty {
            Type::Int(i) => i.size() as u64,
            Type::Ptr(_) => ptr_size,
            Type::Struct(s) | Type::Union(s) => s.size() as u64,
            Type::Enum(e) => e.size() as u64,
            Type::Enum64(e) => e.size() as u64,
            Type::Float(f) => f.size() as u64,
            Type::Array(a) => {
                mult = mult
                    .checked_mul(a.len() as u64)
                    .ok_or_else(|| LayoutError::Malformed("array size overflows".into()))?;
                let elem = a
                    .get_type_id()
                    .ok_or_else(|| LayoutError::Malformed("array without element type".into()))?;
                ty = type_by_id(btf, elem)?;
                continue;
            }
            other => {
                return Err(LayoutError::Malformed(format!(
                    "cannot size a BTF {}",
                    other.name()
                )));
            }
        };
        return base
            .checked_mul(mult)
            .ok_or_else(|| LayoutError::Malformed("type size overflows".into()));
    }
    Err(LayoutError::Malformed("array nesting too deep".into()))
}

/// Finds `struct NAME` by name: through the ids the load-time pass found for the names in
/// [`super::index::NAMES`]; any other name scans every type name (btf-rs's lazy backend), so `resolve` looks
/// up its two roots by name and reaches every other struct through member types.
///
/// Non-deduplicated BTF (early BTFHub files) holds many copies of the same struct, and forward declarations
/// share the name: take the largest full definition, as pahole's own users do.
pub fn find_struct(btf: &Btf, name: &str) -> Result<Struct, LayoutError> {
    // The ids the load-time pass found, each checked to be a `struct NAME`; btf-rs's own scan otherwise.
    let hinted = btf.struct_ids(name).and_then(|ids| {
        ids.iter()
            .map(|&id| match btf.resolve_type_by_id(id) {
                Ok(Type::Struct(s)) if name_of(btf, &s) == name => Some(Type::Struct(s)),
                _ => None,
            })
            .collect::<Option<Vec<Type>>>()
            .filter(|types| !types.is_empty())
    });
    let types = match hinted {
        Some(types) => types,
        None => btf.resolve_types_by_name(name).map_err(btf_err)?,
    };
    types
        .into_iter()
        .filter_map(|t| match t {
            Type::Struct(s) if !s.members.is_empty() => Some(s),
            _ => None,
        })
        .max_by_key(|s| s.size())
        .ok_or_else(|| LayoutError::MissingStruct(name.to_string()))
}

/// The full struct a member's type (or, for a pointer, its pointee) names. A forward declaration or an
/// empty definition falls back to the lookup by `name`.
pub fn struct_via(btf: &Btf, type_id: u32, name: &str) -> Result<Struct, LayoutError> {
    let mut ty = type_by_id(btf, type_id)?;
    if let Type::Ptr(p) = &ty {
        let id = p
            .get_type_id()
            .ok_or_else(|| LayoutError::Malformed("pointer without a type".into()))?;
        ty = type_by_id(btf, id)?;
    }
    if let Type::Array(a) = &ty {
        let id = a
            .get_type_id()
            .ok_or_else(|| LayoutError::Malformed("array without element type".into()))?;
        ty = type_by_id(btf, id)?;
    }
    match ty {
        Type::Struct(s) if !s.members.is_empty() && name_of(btf, &s) == name => Ok(s),
        _ => find_struct(btf, name),
    }
}

/// Finds a member by name, looking through anonymous struct and union members (the kernel uses many:
/// `skc_addrpair`, `skc_portpair`, the `head`/`nulls_head` union of the listen bucket...).
///
/// Anonymous members may share their types (in a crafted BTF, many times over: a DAG of 30 levels has 2^30
/// paths). Whether a type holds the name does not depend on where it sits, so each anonymous type is
/// searched once per call: the search is linear in the number of types, whatever their sharing.
pub fn find_member(btf: &Btf, s: &Struct, name: &str) -> Result<Option<Found>, LayoutError> {
    let mut searched = HashSet::new();
    let mut budget = MAX_MEMBERS_VISITED;
    find_member_at(btf, s, name, 0, 0, &mut searched, &mut budget)
}

/// Members looked at by one search, at most (the biggest kernel struct has a few hundred; BTF has ~130,000
/// types): a bound on top of the memo, for any input.
const MAX_MEMBERS_VISITED: u32 = 1 << 20;

fn find_member_at(
    btf: &Btf,
    s: &Struct,
    name: &str,
    base_bits: u64,
    depth: usize,
    searched: &mut HashSet<u32>,
    budget: &mut u32,
) -> Result<Option<Found>, LayoutError> {
    if depth > MAX_DEPTH {
        return Err(LayoutError::Malformed(
            "anonymous members nest too deep".into(),
        ));
    }
    for m in &s.members {
        *budget = budget.checked_sub(1).ok_or_else(|| {
            LayoutError::Malformed(format!(
                "looking for member {name}: over {MAX_MEMBERS_VISITED} members visited"
            ))
        })?;
        let mname = btf.resolve_name(m).unwrap_or_default();
        let type_id = m
            .get_type_id()
            .ok_or_else(|| LayoutError::Malformed("member without a type".into()))?;
        let bit_offset = base_bits
            .checked_add(u64::from(m.bit_offset()))
            .ok_or_else(|| LayoutError::Malformed("member offset overflows".into()))?;
        if mname == name {
            return Ok(Some(Found {
                bit_offset,
                bitfield_size: m.bitfield_size().filter(|&b| b != 0),
                type_id,
            }));
        }
        // An anonymous type already searched (elsewhere in the DAG) does not hold the name.
        if mname.is_empty()
            && searched.insert(type_id)
            && let Type::Struct(inner) | Type::Union(inner) = type_by_id(btf, type_id)?
            && let Some(f) =
                find_member_at(btf, &inner, name, bit_offset, depth + 1, searched, budget)?
        {
            return Ok(Some(f));
        }
    }
    Ok(None)
}

/// Follows a path of member names from a struct, each step into the struct (or union) type of the previous
/// member. Offsets add up; the result is relative to the start of `s`.
pub fn find_path(btf: &Btf, s: &Struct, path: &[&str]) -> Result<Option<Found>, LayoutError> {
    let mut cur = s.clone();
    let mut total: u64 = 0;
    let mut last = None;
    for (i, name) in path.iter().enumerate() {
        let Some(f) = find_member(btf, &cur, name)? else {
            return Ok(None);
        };
        total = total
            .checked_add(f.bit_offset)
            .ok_or_else(|| LayoutError::Malformed("member offset overflows".into()))?;
        last = Some(Found {
            bit_offset: total,
            ..f
        });
        if i + 1 < path.len() {
            match type_by_id(btf, f.type_id)? {
                Type::Struct(inner) | Type::Union(inner) => cur = inner,
                _ => return Ok(None),
            }
        }
    }
    Ok(last)
}

/// The struct (or union) a type id names, after stripping qualifiers; `None` for any other kind.
pub fn as_struct(btf: &Btf, id: u32) -> Result<Option<Struct>, LayoutError> {
    Ok(match type_by_id(btf, id)? {
        Type::Struct(s) | Type::Union(s) => Some(s),
        _ => None,
    })
}

/// The name of the struct or union that a member's type is, or the pointee's for a pointer (`struct net *`).
pub fn struct_name_of(btf: &Btf, id: u32) -> Result<Option<String>, LayoutError> {
    Ok(match type_by_id(btf, id)? {
        Type::Struct(s) | Type::Union(s) => Some(name_of(btf, &s)),
        _ => None,
    })
}
