"""Hardware-side tools: pack images and packages, tail a module's log, flash an Air8101."""
