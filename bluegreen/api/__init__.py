"""HTTP surface: thin handlers over the runtime objects held in `app.state.runtime`."""
