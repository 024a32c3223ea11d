import streamlit as st

from fer_core.labels import EMOTIONS
from fer_core.settings import fer2013_location

st.title("FER Studio")
st.markdown(
    "Facial expression recognition on the FER2013 task: 48x48 grayscale faces, seven classes "
    f"({', '.join(EMOTIONS)}). Browse a data set, train a model and watch it learn, then try it "
    "on your webcam, your photos and your videos."
)

columns = st.columns(5)
cards = [
    ("Dataset", "dataset", "Browse faces by class and split, class balance, data-quality problems."),
    ("Training", "training", "Train with chosen settings, watch loss and accuracy live, compare and promote runs."),
    ("Live", "live", "Your webcam, classified in real time in the browser."),
    ("Photos", "photos", "Upload photos: every face found, classified, with its probabilities."),
    ("Video", "video", "Upload a clip: every face followed through it, its emotions over time."),
]
for column, (title, url, text) in zip(columns, cards, strict=True):
    with column.container(border=True, height="stretch"):  # the cards of the row share one height
        st.subheader(title)
        st.write(text)
        st.space("stretch")  # the links line up at the bottom
        st.page_link(f"views/{url}.py", label=f"Open {title}", icon=":material/arrow_forward:")

st.divider()
location = fer2013_location()
if location is None:
    st.info(
        "No FER2013 copy found, so the pages use the **built-in synthetic demo set**. To use the real data, "
        "download FER2013 (Kaggle `msambare/fer2013`, folder layout, or the original challenge `fer2013.csv`) and "
        'write `fer2013 = "/path/to/fer2013"` in `fer_studio.toml` at the project root, or put it in '
        "`data/fer2013` inside the project: either applies on the next page load. (`FER2013_DIR` works too, "
        "for an app started after it was set.)"
    )
else:
    st.success(
        f"FER2013 found at `{location}`: the Dataset and Training pages use it (the sidebar switches data sets)."
    )
