//! Attach: a caller's channels connected to a running container's own stdio, through its shim
//! (the shim holds the container's stdio and terminal; berthd relays).

use berth_proto::v1 as shim;

use super::stdio::ProcessIo;
use super::{ContainerError, ContainerState, Containers};
use crate::error::IoError;

impl Containers {
    /// The container's output from now on into `io`, and `io`'s stdin and resizes to it. Ends
    /// when the container's stdio closes; dropping the future detaches.
    pub async fn attach(&self, id: &str, io: ProcessIo) -> Result<(), ContainerError> {
        let ProcessIo {
            stdin,
            stdout,
            stderr,
            resize,
            tty,
        } = io;
        let rec = self.refresh(id).await?;
        if rec.state != ContainerState::Running {
            return Err(ContainerError::FailedPrecondition(format!(
                "container {} is not running",
                rec.id
            )));
        }
        if stdin.is_some() && !rec.config.stdin {
            tracing::info!(container = %rec.id, "attach with stdin to a container without stdin: input is dropped");
        }
        let paths = berth_proto::paths::ShimPaths::new(&self.state_dir, &rec.id);
        let mut client = crate::shim_client::connect_streaming(&paths.socket).await?;
        let (in_tx, in_rx) = tokio::sync::mpsc::channel::<shim::AttachInput>(16);
        let input = |i| shim::AttachInput { input: Some(i) };
        if let Some(mut s) = stdin {
            let tx = in_tx.clone();
            tokio::spawn(async move {
                while let Some(b) = s.recv().await {
                    if tx
                        .send(input(shim::attach_input::Input::Stdin(b.to_vec())))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                let _ = tx
                    .send(input(shim::attach_input::Input::CloseStdin(true)))
                    .await;
            });
        }
        if let Some(mut r) = resize {
            let tx = in_tx.clone();
            tokio::spawn(async move {
                while let Some(size) = r.recv().await {
                    let size = shim::TerminalSize {
                        width: size.width.into(),
                        height: size.height.into(),
                    };
                    if tx
                        .send(input(shim::attach_input::Input::Resize(size)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
        // The shim keeps the call open while our input stream is: held until the attach ends.
        let _keep_input = in_tx;
        let mut output = client
            .attach(tokio_stream::wrappers::ReceiverStream::new(in_rx))
            .await
            .map_err(|e| IoError::new("attaching to the shim", std::io::Error::other(e)))?
            .into_inner();
        while let Ok(Some(o)) = output.message().await {
            let to = match shim::attach_output::Stream::try_from(o.stream) {
                Ok(shim::attach_output::Stream::Stderr) if !tty => stderr.as_ref(),
                _ => stdout.as_ref(),
            };
            if let Some(tx) = to
                && tx.send(bytes::Bytes::from(o.data)).await.is_err()
            {
                break;
            }
        }
        Ok(())
    }
}
