from data_manifest.cli import main

raise SystemExit(main())
