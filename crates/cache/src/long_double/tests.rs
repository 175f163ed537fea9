use super::*;

fn incr(value: &str, by: &str) -> Result<String, &'static str> {
    let v = parse(value.as_bytes()).ok_or("value is not a valid float")?;
    let b = parse(by.as_bytes()).ok_or("value is not a valid float")?;
    let sum = add(v, b);
    if !sum.is_finite() {
        return Err("increment would produce NaN or Infinity");
    }
    Ok(format(sum))
}

/// Answers of Redis 7.0.15 on x86-64 (Debian), `INCRBYFLOAT` on the value.
#[test]
fn answers_as_redis_on_x86_64() {
    let cases: &[(&str, &str, &str)] = &[
        ("0", "0.1", "0.1"),
        ("0.1", "10.5", "10.6"),
        ("0", "0x10", "16"),
        ("16", "1e-4940", "16"),
        ("0", "-0.0", "0"),
        ("0", "5.0e3", "5000"),
        ("5000", ".5", "5000.5"),
        ("5000.5", "5.", "5005.5"),
        ("5005.5", "+3", "5008.5"),
        ("5008.5", "3.0000000000000000001", "5011.5"),
        ("0", "2.5e-18", "0"),
        ("0", "0.000003814697265625", "0.00000381469726562"),
        ("0", "3.814697265625e-6", "0.00000381469726562"),
        ("0", "0x1p-18", "0.00000381469726562"),
        ("0", "-0.000000000000000001", "0"),
        ("0", "123456789012345678901234567890", "123456789012345678899921813504"),
        ("0", "0.3", "0.3"),
        ("0.3", "0.6", "0.9"),
        ("0.9", "-0.9", "0"),
        ("3", "0", "3"),
        ("10.5", "0.1", "10.6"),
        ("5.0e3", "2.0e2", "5200"),
        ("0", "1e300", "1000000000000000000008997324079559193870523944273290747938260082321265646596180935755849152083750497190350372508614274835903592556184672983913096260520748646287327135641843653294084255107606016789726652932370030551382947620994540294772781889620606179267611627097410650567187386105690089424915104006144"),
        ("0", "1.7976931348623157e308", "179769313486231569995921046774104434048386446944329178485314420765176628523124396354701868608387085564428793419425520689308708363451136055357897278026477617073498977686288394835618163294045594434929537447290627480669417384648879122776218333598953852832103282504751611691208117720159985926376802466863339536384"),
    ];
    for (value, by, want) in cases {
        assert_eq!(incr(value, by).as_deref(), Ok(*want), "{value} + {by}");
    }
}

#[test]
fn refusals_as_redis() {
    for bad in [
        "", " 1", "1 ", "nan", "NaN", "1e5000", "1e-5000", "1\x002", "1e", "abc", ".", "e5", "0x", "0x1p", "-", "+",
        "infinit", "1e+", "0x.p1", "\t1", "1.2.3",
    ] {
        assert_eq!(parse(bad.as_bytes()), None, "{bad:?}");
    }
    assert_eq!(incr("0", "inf"), Err("increment would produce NaN or Infinity"));
    assert_eq!(incr("inf", "-inf"), Err("increment would produce NaN or Infinity"));
    assert_eq!(incr("1e4932", "1e4932"), Err("increment would produce NaN or Infinity"));
    assert!(incr("0", "1e4932").is_ok());
    assert!(parse(b"INFINITY").is_some() && parse(b"-Inf").is_some());
    assert!(parse(&vec![b'1'; MAX_INPUT]).is_none());
    assert!(parse(&vec![b'1'; MAX_INPUT - 1]).is_none(), "overflows");
}

#[test]
fn rounding_is_to_nearest_even_with_gradual_underflow() {
    // 2^64 + 1 is not representable: ties to even (2^64); 2^64 + 3 rounds up.
    assert_eq!(incr("18446744073709551616", "1"), Ok("18446744073709551616".into()));
    assert_eq!(incr("18446744073709551616", "3"), Ok("18446744073709551620".into()));
    assert_eq!(incr("18446744073709551615", "0"), Ok("18446744073709551615".into()));
    // The smallest subnormal and the largest finite value parse.
    let tiny = parse(b"0x1p-16445").unwrap();
    assert_eq!(
        tiny,
        LongDouble::Finite {
            neg: false,
            mant: 1,
            exp: MIN_EXP
        }
    );
    assert_eq!(parse(b"0x1p-16447"), None, "underflows to zero");
    assert_eq!(
        parse(b"0xffffffffffffffffp16320"),
        Some(LongDouble::Finite {
            neg: false,
            mant: u64::MAX,
            exp: MAX_EXP
        })
    );
    assert_eq!(parse(b"0x1p16384"), None);
    // Decimal and hexadecimal spellings of one value agree.
    assert_eq!(parse(b"0.5"), parse(b"0x.8"));
    assert_eq!(parse(b"1e-4940"), parse(b"0.00001e-4935"));
}
