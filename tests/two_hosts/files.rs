//! 03 file transfer across hosts: the handshake and both directions.

use super::*;

/// The file server's handshake and transfers work across hosts: one host
/// uploads, another lists and downloads the same bytes (server on 0.0.0.0,
/// then on [::] with an IPv6 client), and a wrong secret is denied.
#[test]
fn file_transfer_across_hosts() {
    let test = "file_transfer_across_hosts";
    let Some(lab) = lab(test) else {
        return;
    };
    let dir = common::temp_dir(test);
    let (root, users) = file_server_files(&dir);
    let mut payload: Vec<u8> = (0..=255u8).collect();
    payload.extend(common::Rng::new(9).bytes(300_000));
    let upload = dir.join("upload.bin");
    std::fs::write(&upload, &payload).unwrap();
    let upload = upload.display().to_string();

    for (n, any) in ["0.0.0.0:0", "[::]:0"].into_iter().enumerate() {
        let args = ["--addr", any, "--root", &root, "--users", &users];
        let server = lab.start_server(SERVER_HOST, FILES, &args, 1);
        let port = server.addr().port();
        let ipv6 = server.addr().is_ipv6();
        let name = format!("across-{n}.bin");

        let to_inside = SocketAddr::new(IpAddr::V4(INSIDE.server_v4), port);
        file_client(
            &lab,
            INSIDE.name,
            to_inside,
            SECRET,
            &["put", &upload, "--as", &name],
        )
        .expect_success("put from the inside host");

        let from = if ipv6 {
            IpAddr::V6(INSIDE2.server_v6)
        } else {
            IpAddr::V4(INSIDE2.server_v4)
        };
        let to_inside2 = SocketAddr::new(from, port);
        let listed = file_client(&lab, INSIDE2.name, to_inside2, SECRET, &["list"]);
        listed.expect_success("list from the second host");
        assert!(listed.stdout.contains(&name), "list:\n{}", listed.stdout);
        let copy = dir.join(format!("copy-{n}.bin"));
        let copy_arg = copy.display().to_string();
        file_client(
            &lab,
            INSIDE2.name,
            to_inside2,
            SECRET,
            &["get", &name, "-o", &copy_arg],
        )
        .expect_success("get from the second host");
        assert!(
            std::fs::read(&copy).unwrap() == payload,
            "the download differs from the upload"
        );

        let denied = file_client(&lab, INSIDE2.name, to_inside2, "not-the-secret", &["list"]);
        assert!(
            !denied.success(),
            "a wrong secret was accepted:\n{}",
            denied.stdout
        );
        assert!(
            denied.stderr.to_lowercase().contains("denied"),
            "a wrong secret should say it was denied; stderr:\n{}",
            denied.stderr
        );
    }
}

const FILES_CLIENT: &str = "03_file_client";

/// Runs `03_file_client --addr ADDR --user learner ARGS…` on `host`.
fn file_client(lab: &Lab, host: &str, addr: SocketAddr, secret: &str, args: &[&str]) -> netns::Ran {
    let mut client = common::command(FILES_CLIENT);
    client
        .args(["--addr", &addr.to_string(), "--user", "learner"])
        .args(args)
        .env("NETLESSONS_SECRET", secret);
    lab.run(host, &client, b"")
}
