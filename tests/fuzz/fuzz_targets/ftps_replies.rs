//! A printer's FTPS control replies, as the gateway reads them while logging in and looking
//! for a print's 3MF (`SIZE` of each candidate). The input is everything the "printer" says on
//! the control connection, over a real loopback socket (plain TCP: the TLS layer is rustls',
//! not ours); the session runs under a deadline as the gateway's does.
#![no_main]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use printyard_bambu::ftps::{candidates, locate};
use suppaftp::Status;
use suppaftp::tokio::AsyncFtpStream;
use suppaftp::types::FileType;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// One listener for every input: a port bound per input ran out of ephemeral ports after
/// about 28,000 inputs (the sockets in TIME_WAIT), which the first long run took for a crash.
fn listener() -> &'static TcpListener {
    static LISTENER: OnceLock<TcpListener> = OnceLock::new();
    LISTENER.get_or_init(|| TcpListener::bind("127.0.0.1:0").expect("a loopback port"))
}

fuzz_target!(|data: &[u8]| {
    let addr = listener().local_addr().expect("its address");
    let replies = data.to_vec();
    let printer = std::thread::spawn(move || {
        let Ok((mut socket, _)) = listener().accept() else {
            return;
        };
        let _ = socket.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = socket.write_all(&replies);
        let _ = socket.shutdown(std::net::Shutdown::Write);
        // Take whatever the client sends until it hangs up.
        let mut sink = [0u8; 4096];
        while matches!(socket.read(&mut sink), Ok(n) if n > 0) {}
    });
    let wanted = candidates(Some("cube"), Some("/cache/cube.gcode.3mf"));
    runtime().block_on(async {
        let session = async {
            let mut ftp = AsyncFtpStream::connect(addr).await?;
            ftp.login("bblp", "12345678").await?;
            ftp.custom_command("PBSZ 0", &[Status::CommandOk]).await?;
            ftp.custom_command("PROT P", &[Status::CommandOk]).await?;
            ftp.transfer_type(FileType::Binary).await?;
            // Without a job name: no LIST, whose PASV reply would name a port to connect to.
            if let Ok(Some((path, _))) = locate(&mut ftp, &wanted, None).await {
                assert!(wanted.contains(&path));
            }
            Ok::<_, suppaftp::FtpError>(())
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), session).await;
    });
    let _ = printer.join();
});
