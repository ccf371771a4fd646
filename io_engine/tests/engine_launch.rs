//! Choosing and starting engines: an explicit io_uring request that cannot start is a typed error, the
//! default falls back to `std-fs` with exactly one warning, and the environment setting is honoured.

use std::io;

mod common;
use common::count_warnings;

use io_engine::{
    EngineSelectError, EngineStartError, IoEngine, IoEngineKind, UringConfig, UringEngine,
};

fn eperm() -> Result<UringEngine, EngineStartError> {
    Err(EngineStartError::from_setup_error(
        io::Error::from_raw_os_error(libc::EPERM),
    ))
}

fn enomem() -> Result<UringEngine, EngineStartError> {
    Err(EngineStartError::from_setup_error(
        io::Error::from_raw_os_error(libc::ENOMEM),
    ))
}

#[test]
fn default_falls_back_with_one_warning_explicit_errors() {
    let (engine, warnings) = count_warnings(|| IoEngine::launch_default_with(enomem));
    assert_eq!(engine.kind(), IoEngineKind::StdFs);
    assert_eq!(warnings, 1, "exactly one warning for the fallback");

    let err = IoEngine::launch_with(IoEngineKind::TokioEpollUring, enomem).unwrap_err();
    assert!(matches!(err, EngineStartError::OutOfMemory(_)), "{err:?}");
    // std-fs never needs the ring
    let e = IoEngine::launch_with(IoEngineKind::StdFs, || panic!("must not start a ring")).unwrap();
    assert_eq!(e.kind(), IoEngineKind::StdFs);
}

#[test]
fn select_explicit_vs_default() {
    // set and valid: explicit, so a failure is an error naming the variable
    let kind = IoEngineKind::parse_env_value(Some("tokio-epoll-uring")).unwrap();
    let err = IoEngine::select(kind, eperm).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("VIRTUAL_FILE_IO_ENGINE=tokio-epoll-uring"),
        "{msg}"
    );
    match err {
        EngineSelectError::Start { kind, source } => {
            assert_eq!(kind, IoEngineKind::TokioEpollUring);
            assert!(
                matches!(
                    source,
                    EngineStartError::Disabled { .. } | EngineStartError::PermissionDenied(_)
                ),
                "{source:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    // unset: the default, with fallback
    let kind = IoEngineKind::parse_env_value(None).unwrap();
    let (engine, warnings) = count_warnings(|| IoEngine::select(kind, eperm).unwrap());
    assert_eq!((engine.kind(), warnings), (IoEngineKind::StdFs, 1));
    // a bad value is the settings error, listing the accepted values
    let bad = IoEngineKind::parse_env_value(Some("uring")).map_err(EngineSelectError::from);
    let msg = bad.unwrap_err().to_string();
    assert!(msg.contains("std-fs, tokio-epoll-uring"), "{msg}");
}

/// A real start failure, not an injected one: no tokio runtime to run the reaper in.
#[test]
fn outside_a_runtime_is_a_typed_error_and_the_default_falls_back() {
    let err = UringEngine::launch(UringConfig::default()).unwrap_err();
    assert!(matches!(err, EngineStartError::NoRuntime(_)), "{err:?}");
    let err = IoEngine::launch(IoEngineKind::TokioEpollUring).unwrap_err();
    assert!(err.to_string().contains("tokio runtime"), "{err}");
    let (engine, warnings) = count_warnings(IoEngine::launch_default);
    assert_eq!((engine.kind(), warnings), (IoEngineKind::StdFs, 1));
    // a runtime without IO enabled is reported too, not a panic
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let err = rt
        .block_on(async { UringEngine::launch(UringConfig::default()) })
        .unwrap_err();
    assert!(matches!(err, EngineStartError::NoRuntime(_)), "{err:?}");
}

#[test]
fn invalid_config_is_rejected() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for config in [
            UringConfig {
                entries: 0,
                ..Default::default()
            },
            UringConfig {
                rings: 0,
                ..Default::default()
            },
        ] {
            let err = UringEngine::launch(config).unwrap_err();
            assert!(matches!(err, EngineStartError::Config(_)), "{err:?}");
        }
    });
}

#[tokio::test]
async fn launch_default_and_from_env_start_the_ring_here() {
    let engine = IoEngine::launch_default();
    if engine.kind() != IoEngineKind::TokioEpollUring {
        common::skip_without_uring("the default engine fell back to std-fs");
        return;
    }
    match IoEngineKind::from_env() {
        Ok(Some(kind)) => assert_eq!(IoEngine::from_env().unwrap().kind(), kind),
        Ok(None) => assert_eq!(
            IoEngine::from_env().unwrap().kind(),
            IoEngineKind::TokioEpollUring
        ),
        Err(_) => assert!(matches!(
            IoEngine::from_env(),
            Err(EngineSelectError::Env(_))
        )),
    }
}
